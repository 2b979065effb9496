//! Checks of `trim_dead`: the dead set by age and by count.

use super::*;

pub(super) async fn trim_dead_by_age_and_count(b: &dyn QueueBackend, q: &QueueName) -> Outcome {
    let ids = ["d1", "d2", "d3", "d4", "d5", "d6"];
    let (owner, _) = owned_setup(b, q, &ids).await?;
    for (i, id) in ids.iter().enumerate() {
        let kill = KillJob {
            id: (*id).into(),
            data: None,
            reason: "test".into(),
        };
        let killed = b
            .kill(q, &owner, &[kill], 10.0 * (i as f64 + 1.0))
            .await
            .ctx("kill")?;
        ensure_eq!(killed, vec![true], "kill of {id}");
    }
    let none = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 10.0,
                keep_at_most: 6,
                max_jobs: 10,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(none, 0, "trim with nothing older than 10 and 6 kept");
    let by_age = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 25.0,
                keep_at_most: 100,
                max_jobs: 10,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(by_age, 2, "trim of jobs killed before 25");
    ensure_eq!(
        b.push(q, &[job("d1", "new")]).await.ctx("push")?,
        vec![true],
        "push of trimmed d1 (data must be gone)"
    );
    ensure!(exists(b, q, "d3").await?, "d3 (killed at 30) was trimmed");
    let capped = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 100.0,
                keep_at_most: 0,
                max_jobs: 1,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(capped, 1, "trim capped at max_jobs 1");
    ensure!(
        !exists(b, q, "d3").await?,
        "the oldest (d3) was not the one trimmed"
    );
    let by_count = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 0.0,
                keep_at_most: 1,
                max_jobs: 10,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(by_count, 2, "trim to keep at most 1 of 3");
    ensure!(exists(b, q, "d6").await?, "the newest (d6) was trimmed");
    ensure!(
        !exists(b, q, "d5").await?,
        "d5 was kept instead of the newest"
    );
    let zero = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 100.0,
                keep_at_most: 0,
                max_jobs: 0,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(zero, 0, "trim with max_jobs 0");
    let last = b
        .trim_dead(
            q,
            DeadTrim {
                killed_before: 100.0,
                keep_at_most: 0,
                max_jobs: 10,
            },
        )
        .await
        .ctx("trim_dead")?;
    ensure_eq!(last, 1, "trim of the last dead job");
    Ok(())
}
