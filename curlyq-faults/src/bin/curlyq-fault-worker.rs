//! `curlyq-fault-worker`: one consumer process of the fault suite. See
//! `curlyq_faults::worker` for its arguments and the handler's behaviours.

fn main() {
    // Die with the harness that started us (a killed test run leaves no workers behind).
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // Aborting jobs crash this process on purpose: no core dumps.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match curlyq_faults::worker::WorkerConfig::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("curlyq-fault-worker: {e}");
            std::process::exit(2);
        }
    };
    if std::env::var_os("CURLYQ_FAULT_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("CURLYQ_FAULT_LOG"))
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("curlyq-fault-worker: no runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(curlyq_faults::worker::run(config));
    std::process::exit(code);
}
