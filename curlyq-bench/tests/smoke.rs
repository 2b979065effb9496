//! Keeps the benchmark tool working: runs it with small counts against its own
//! redis-server and checks that the table has every row, each measured for both
//! backends.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The rows the table must have, by the start of their first cell.
const ROWS: &[&str] = &[
    "Ceiling: redis-benchmark EVALSHA push, 1 connection, unpipelined",
    "Ceiling: redis-benchmark EVALSHA push, 50 connections, unpipelined",
    "Ceiling: redis-benchmark EVALSHA push, 50 connections, pipeline 16",
    "Enqueue: `perform`, 1 call in flight (",
    "Enqueue: `perform`, 1 call in flight, current-thread runtime",
    "Enqueue: `perform`, 64 calls in flight",
    "Enqueue: `perform_many`, batches of 100",
    "Process 400 queued jobs, concurrency 1 (",
    "Process 400 queued jobs, concurrency 1, current-thread runtime",
    "Process 400 queued jobs, concurrency 16 ",
    "Process 400 queued jobs, concurrency 50 ",
    "Process 400 queued jobs, concurrency 128 ",
    "Process a backlog of 10 jobs, concurrency 128",
    "Process a backlog of 80 jobs, concurrency 128",
    "Process a backlog of 800 jobs, concurrency 128",
    "Backlog flatness at concurrency 128",
    "Steady 1,000 jobs/s",
    "Steady 10,000 jobs/s",
    "`perform_after`",
    "Redis memory per queued job",
    "Consumer peak RSS, concurrency 128",
];

/// Runs the tool with `--quick --jobs 400 --out -` and checks its report.
#[test]
fn quick_run_reports_every_row_for_both_backends() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_curlyq-bench"))
        .args(["--quick", "--jobs", "400", "--out", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the benchmark binary starts");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the tool") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("curlyq-bench --quick took longer than 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let report = reader
        .join()
        .expect("the reader thread")
        .expect("stdout is UTF-8");
    assert!(
        status.success(),
        "curlyq-bench failed ({status}):\n{report}"
    );

    // The main table is the first one: header, separator, then the rows.
    let table: Vec<&str> = report
        .lines()
        .skip_while(|l| !l.starts_with("| measurement |"))
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(
        table
            .first()
            .is_some_and(|h| h.contains("redis-rs") && h.contains("fred")),
        "no table with both backends:\n{report}"
    );
    assert_eq!(table.len(), 2 + ROWS.len(), "rows:\n{}", table.join("\n"));
    for (line, row) in table[2..].iter().zip(ROWS) {
        assert!(
            line.starts_with(&format!("| {row}")),
            "expected row {row:?}, found {line:?}"
        );
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "", label, redis-rs, fred, Go reference, "".
        assert_eq!(cells.len(), 6, "{line}");
        let ceiling = row.starts_with("Ceiling");
        for cell in &cells[2..4] {
            // The ceiling needs redis-benchmark; everything else must be measured.
            if !ceiling {
                assert!(!cell.is_empty() && *cell != "not measured", "{line}");
                assert!(
                    cell.chars().next().is_some_and(|c| c.is_ascii_digit()),
                    "{line}"
                );
            }
        }
    }
    for section in ["Date:", "Machine:", "Redis ", "Command: `"] {
        assert!(report.contains(section), "{section} missing:\n{report}");
    }
}
