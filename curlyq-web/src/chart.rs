//! The processed / failed chart: an inline SVG drawn on the server (presentation
//! attributes and classes only, nothing that needs inline style).

use curlyq_core::admin::{Counts, MinuteCounts};
use maud::{html, Markup};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 140.0;
/// Room on the left for the scale, and below for the time labels.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 18.0;
const TOP: f64 = 8.0;

/// The per-minute counters of several queues added minute by minute (every queue's
/// stats were read with the same `now` and length, so the minutes line up; a shorter
/// series is aligned on its last minute).
pub(crate) fn sum_minutes(series: &[&[MinuteCounts]]) -> Vec<MinuteCounts> {
    let len = series.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![MinuteCounts::default(); len];
    for s in series {
        let offset = len - s.len();
        for (i, m) in s.iter().enumerate() {
            let slot = &mut out[offset + i];
            slot.minute = m.minute;
            slot.counts.add(m.counts);
        }
    }
    out
}

/// Adds up consecutive minutes `per` at a time (the last bucket holds the current
/// minute), oldest first.
pub(crate) fn buckets(minutes: &[MinuteCounts], per: usize) -> Vec<Counts> {
    let per = per.max(1);
    let skip = minutes.len() % per;
    let mut out = Vec::with_capacity(minutes.len() / per + 1);
    if skip > 0 {
        out.push(total(&minutes[..skip]));
    }
    for chunk in minutes[skip..].chunks(per) {
        out.push(total(chunk));
    }
    out
}

fn total(minutes: &[MinuteCounts]) -> Counts {
    let mut c = Counts::default();
    for m in minutes {
        c.add(m.counts);
    }
    c
}

/// The SVG polyline points of one series scaled to `max`.
fn points(values: &[u64], max: u64) -> String {
    let n = values.len();
    let step = if n > 1 {
        (WIDTH - LEFT) / (n - 1) as f64
    } else {
        0.0
    };
    let plot = HEIGHT - BOTTOM - TOP;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = LEFT + step * i as f64;
            let y = TOP + plot - (*v as f64 / max as f64) * plot;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One chart: `title` (such as "Last hour, per minute"), the buckets oldest first, and
/// the label of the oldest one (such as "−60m").
pub(crate) fn chart(title: &str, buckets: &[Counts], since: &str) -> Markup {
    let processed: Vec<u64> = buckets.iter().map(|c| c.processed).collect();
    let failed: Vec<u64> = buckets.iter().map(|c| c.failed).collect();
    let max = processed
        .iter()
        .chain(&failed)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let sum_p: u64 = processed.iter().sum();
    let sum_f: u64 = failed.iter().sum();
    let summary = format!("{title}: {sum_p} processed, {sum_f} failed (peak {max} per point)");
    let base_y = HEIGHT - BOTTOM;
    let view_box = format!("0 0 {WIDTH} {HEIGHT}");
    html! {
        figure.chart {
            figcaption {
                (title) " — "
                span.processed { (sum_p) " processed" } ", "
                span.failed { (sum_f) " failed" }
            }
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(view_box) role="img"
                aria-label=(summary) preserveAspectRatio="none" {
                title { (summary) }
                line.axis x1=(LEFT) y1=(base_y) x2=(WIDTH) y2=(base_y) {}
                line.grid x1=(LEFT) y1=(TOP) x2=(WIDTH) y2=(TOP) {}
                text.label x=(LEFT - 4.0) y=(TOP + 4.0) text-anchor="end" { (max) }
                text.label x=(LEFT - 4.0) y=(base_y) text-anchor="end" { "0" }
                text.label x=(LEFT) y=(HEIGHT - 4.0) text-anchor="start" { (since) }
                text.label x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { "now" }
                polyline.series.processed fill="none" stroke-width="1.5" points=(points(&processed, max)) {}
                polyline.series.failed fill="none" stroke-width="1.5" points=(points(&failed, max)) {}
            }
        }
    }
}

/// The two charts of a set of per-minute counters (the last 1440 minutes, or fewer):
/// the last hour per minute, the last 24 hours per 15 minutes.
pub(crate) fn charts(minutes: &[MinuteCounts]) -> Markup {
    let hour = &minutes[minutes.len().saturating_sub(60)..];
    html! {
        div.charts {
            (chart("Last hour, per minute", &buckets(hour, 1), "−60m"))
            (chart("Last 24 hours, per 15 minutes", &buckets(minutes, 15), "−24h"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(minute: i64, processed: u64, failed: u64) -> MinuteCounts {
        MinuteCounts {
            minute,
            counts: Counts {
                processed,
                failed,
                ..Counts::default()
            },
        }
    }

    #[test]
    fn buckets_end_with_the_current_minute() {
        let m: Vec<MinuteCounts> = (0..7).map(|i| minute(i, 1, 0)).collect();
        let b = buckets(&m, 3);
        assert_eq!(
            b.iter().map(|c| c.processed).collect::<Vec<_>>(),
            vec![1, 3, 3]
        );
    }

    #[test]
    fn queues_add_up_minute_by_minute() {
        let a = [minute(1, 1, 0), minute(2, 2, 1)];
        let b = [minute(2, 5, 5)];
        let s = sum_minutes(&[&a, &b]);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].counts.processed, s[1].counts.processed), (1, 7));
        assert_eq!(s[1].counts.failed, 6);
    }

    #[test]
    fn the_svg_says_what_it_shows() {
        let m: Vec<MinuteCounts> = (0..60).map(|i| minute(i, i as u64, 1)).collect();
        let svg = chart("Last hour", &buckets(&m, 1), "−60m").into_string();
        assert!(svg.contains("1770 processed, 60 failed"), "{svg}");
        assert!(svg.contains("<polyline"));
        assert!(!svg.contains("style="));
        // An empty series still draws (a flat line), without dividing by zero.
        let empty = chart("x", &[], "").into_string();
        assert!(!empty.contains("NaN"));
    }
}
