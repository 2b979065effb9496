//! Embeds the dashboard in an axum application under `/admin/queues`, next to the
//! application's own routes, behind Basic authentication, on the demo store.
//!
//! ```sh
//! DASHBOARD_PASSWORD=secret cargo run -p curlyq-web --example embed
//! # then open http://127.0.0.1:3000/admin/queues (user "ops")
//! ```

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use curlyq_web::{basic_auth, demo, Dashboard};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Any Arc<dyn QueueBackend>: curlyq_redis_rs::RedisBackend::connect(url).await? in
    // production; the in-memory demo store here.
    let now = curlyq_core::unix_seconds(std::time::SystemTime::now());
    let backend = Arc::new(demo::demo_backend(now).await?);

    let password = std::env::var("DASHBOARD_PASSWORD")
        .map_err(|_| "set DASHBOARD_PASSWORD to the dashboard's password")?;
    let dashboard = Dashboard::new(backend)
        .read_only_queue(demo::PAUSED_QUEUE)
        .authorize(basic_auth("ops", password));

    let app = Router::new()
        .route("/", get(|| async { "the application's own home page" }))
        .nest("/admin/queues", dashboard.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "dashboard on http://{}/admin/queues",
        listener.local_addr()?
    );
    curlyq_web::serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
