//! The admin operations of [`MemoryBackend`](super::MemoryBackend) on one queue's state:
//! the reference model of what the Redis scripts `admin_*.lua` do.

use std::collections::BTreeSet;

use super::QueueState;
use crate::admin::{
    describe, minute_of, ActionReport, ConsumerInfo, Counts, DeleteReport, JobDetail, JobPage,
    JobState, JobSummary, MinuteCounts, PageRequest, Problem, ProblemKind, QueueStats,
    RemoveReport, Selection, COUNTER_MINUTES, COUNTER_TTL_SECONDS, FIND_ACTIVE_SCAN, HEAD_EXTRA,
    MAX_PAGE, MAX_PREVIEW, TAIL_BYTES,
};
use crate::{BackendError, MAX_BATCH};

impl QueueState {
    /// Adds `counts` to the totals and to `now`'s minute; forgets minutes whose key Redis
    /// would have expired (a key lives [`COUNTER_TTL_SECONDS`] after its last write).
    pub(super) fn count(&mut self, now: f64, counts: Counts) {
        if counts.is_zero() {
            return;
        }
        let minute = minute_of(now);
        self.total.add(counts);
        self.minutes.entry(minute).or_default().add(counts);
        let keep_from = minute - (COUNTER_TTL_SECONDS / 60) as i64;
        self.minutes = self.minutes.split_off(&keep_from);
    }

    /// The registered consumers' IDs in byte order, with their in-flight sets.
    fn registered_inflight(&self) -> Vec<(&str, &BTreeSet<String>)> {
        let mut ids: Vec<&str> = self
            .consumers
            .iter()
            .map(|(id, _)| id)
            .filter(|id| self.inflight.contains_key(*id))
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.inflight.get(id).map(|set| (id, set)))
            .collect()
    }

    fn held_by(&self, id: &str) -> Option<&str> {
        self.registered_inflight()
            .into_iter()
            .find(|(_, set)| set.contains(id))
            .map(|(consumer, _)| consumer)
    }

    pub(super) fn stats(&self, now: f64, minutes: usize) -> QueueStats {
        let head_ready = self.active.front().and_then(|id| {
            let data = self.data.get(id)?;
            let mut s = JobSummary::default();
            let head = &data[..data.len().min(HEAD_EXTRA)];
            describe(&mut s, head, &[], data.len() as u64, 0);
            s.ready_at
        });
        let last = minute_of(now);
        let n = minutes.min(COUNTER_MINUTES) as i64;
        QueueStats {
            active: self.active.len() as u64,
            scheduled: self.scheduled.len() as u64,
            dead: self.dead.len() as u64,
            inflight: self
                .registered_inflight()
                .iter()
                .map(|(_, set)| set.len() as u64)
                .sum(),
            consumers: self.consumers.len() as u64,
            paused: self.paused,
            oldest_ready_at: head_ready,
            next_due: self.scheduled.first_score(),
            total: self.total,
            minutes: (last - n + 1..=last)
                .map(|minute| MinuteCounts {
                    minute,
                    counts: self.minutes.get(&minute).copied().unwrap_or_default(),
                })
                .collect(),
        }
    }

    pub(super) fn consumer_infos(&self) -> Vec<ConsumerInfo> {
        self.consumers
            .iter()
            .map(|(id, heartbeat)| ConsumerInfo {
                id: id.to_owned(),
                heartbeat,
                inflight: self.inflight.get(id).map_or(0, |s| s.len() as u64),
            })
            .collect()
    }

    /// A job's ID and side fields (reason, last error, orphan count).
    fn side_fields(&self, id: &str) -> JobSummary {
        JobSummary {
            id: id.to_owned(),
            reason: self.reasons.get(id).cloned(),
            last_error: self.errors.get(id).cloned(),
            orphaned: self.orphaned.get(id).copied().unwrap_or(0),
            ..JobSummary::default()
        }
    }

    /// A job's summary without state: its side fields and what its data says, from the
    /// bounded head and tail a page reads.
    fn summary(&self, id: &str, preview: usize) -> JobSummary {
        let mut s = self.side_fields(id);
        if let Some(data) = self.data.get(id) {
            let head = &data[..data.len().min(preview + HEAD_EXTRA)];
            let tail = &data[data.len().saturating_sub(TAIL_BYTES)..];
            describe(&mut s, head, tail, data.len() as u64, preview);
        }
        s
    }

    pub(super) fn page(&self, page: PageRequest) -> JobPage {
        let limit = page.limit.clamp(1, MAX_PAGE);
        let preview = page.preview.min(MAX_PREVIEW);
        let start = usize::try_from(page.cursor).unwrap_or(usize::MAX);
        let (total, picked): (usize, Vec<JobSummary>) = match page.state {
            JobState::Active => (
                self.active.len(),
                self.active
                    .iter()
                    .enumerate()
                    .skip(start)
                    .take(limit)
                    .map(|(i, id)| JobSummary {
                        state: Some(JobState::Active),
                        position: Some(i as u64),
                        ..self.summary(id, preview)
                    })
                    .collect(),
            ),
            JobState::Scheduled | JobState::Dead => {
                let set = if page.state == JobState::Scheduled {
                    &self.scheduled
                } else {
                    &self.dead
                };
                (
                    set.len(),
                    set.iter()
                        .skip(start)
                        .take(limit)
                        .map(|(id, score)| JobSummary {
                            state: Some(page.state),
                            score: Some(score),
                            ..self.summary(id, preview)
                        })
                        .collect(),
                )
            }
            JobState::InFlight => {
                let all: Vec<(&str, &String)> = self
                    .registered_inflight()
                    .into_iter()
                    .flat_map(|(c, set)| set.iter().map(move |id| (c, id)))
                    .collect();
                (
                    all.len(),
                    all.iter()
                        .skip(start)
                        .take(limit)
                        .map(|(consumer, id)| JobSummary {
                            state: Some(JobState::InFlight),
                            consumer: Some((*consumer).to_owned()),
                            ..self.summary(id, preview)
                        })
                        .collect(),
                )
            }
            JobState::Unplaced => (0, Vec::new()),
        };
        let end = start.saturating_add(picked.len());
        JobPage {
            next: (end < total).then_some(end as u64),
            total: total as u64,
            jobs: picked,
        }
    }

    pub(super) fn find(&self, id: &str) -> Option<JobDetail> {
        let data = self.data.get(id).cloned();
        let mut s = self.side_fields(id);
        if let Some(data) = &data {
            describe(&mut s, data, &[], data.len() as u64, 0);
        }
        let position = self
            .active
            .iter()
            .take(FIND_ACTIVE_SCAN)
            .position(|a| a == id);
        if let Some(consumer) = self.held_by(id) {
            s.state = Some(JobState::InFlight);
            s.consumer = Some(consumer.to_owned());
        } else if let Some(at) = self.scheduled.score(id) {
            s.state = Some(JobState::Scheduled);
            s.score = Some(at);
        } else if let Some(position) = position {
            s.state = Some(JobState::Active);
            s.position = Some(position as u64);
        } else if let Some(at) = self.dead.score(id) {
            s.state = Some(JobState::Dead);
            s.score = Some(at);
        } else if data.is_some() {
            s.state = Some(JobState::Unplaced);
        } else {
            return None;
        }
        Some(JobDetail { summary: s, data })
    }

    /// Moves jobs of `from` (scheduled or dead) to the tail of the active list.
    pub(super) fn revive(&mut self, from: JobState, selection: &Selection) -> ActionReport {
        let set = if from == JobState::Dead {
            &mut self.dead
        } else {
            &mut self.scheduled
        };
        let ids: Vec<String> = match selection {
            Selection::Ids(ids) => ids.clone(),
            Selection::Oldest(n) => set
                .iter()
                .take((*n).min(MAX_BATCH))
                .map(|(id, _)| id.to_owned())
                .collect(),
        };
        let mut report = ActionReport::default();
        for id in ids {
            if set.remove(&id).is_some() {
                report.done.push(id);
            } else {
                report.skipped.push(id);
            }
        }
        for id in &report.done {
            if from == JobState::Dead {
                self.reasons.remove(id);
            }
            self.active.push_back(id.clone());
        }
        if !report.done.is_empty() {
            self.set_signal();
        }
        report
    }

    fn forget(&mut self, id: &str) {
        self.data.remove(id);
        self.reasons.remove(id);
        self.errors.remove(id);
        self.orphaned.remove(id);
        self.traces.remove(id);
    }

    pub(super) fn delete(&mut self, ids: &[String]) -> DeleteReport {
        let mut report = DeleteReport::default();
        for id in ids {
            if self.held_by(id).is_some() {
                report.in_flight.push(id.clone());
                continue;
            }
            let scheduled = self.scheduled.remove(id).is_some();
            let before = self.active.len();
            self.active.retain(|a| a != id);
            let active = self.active.len() < before;
            let dead = self.dead.remove(id).is_some();
            let had_data = self.data.contains_key(id);
            self.forget(id);
            let state = if scheduled {
                JobState::Scheduled
            } else if active {
                JobState::Active
            } else if dead {
                JobState::Dead
            } else if had_data {
                JobState::Unplaced
            } else {
                report.missing.push(id.clone());
                continue;
            };
            report.deleted.push((id.clone(), state));
        }
        report
    }

    pub(super) fn purge(&mut self, state: JobState, max: usize) -> Result<usize, BackendError> {
        let n = max.min(MAX_BATCH);
        let victims: Vec<String> = match state {
            JobState::Active => {
                let n = n.min(self.active.len());
                self.active.drain(..n).collect()
            }
            JobState::Scheduled | JobState::Dead => {
                let set = if state == JobState::Scheduled {
                    &mut self.scheduled
                } else {
                    &mut self.dead
                };
                let ids: Vec<String> = set.iter().take(n).map(|(id, _)| id.to_owned()).collect();
                for id in &ids {
                    set.remove(id);
                }
                ids
            }
            other => return Err(purge_refused(other)),
        };
        for id in &victims {
            self.forget(id);
        }
        Ok(victims.len())
    }

    pub(super) fn remove_consumer(&mut self, consumer: &str, expired_before: f64) -> RemoveReport {
        let Some(heartbeat) = self.consumers.score(consumer) else {
            return RemoveReport::default();
        };
        if heartbeat > expired_before {
            return RemoveReport {
                heartbeat: Some(heartbeat),
                ..RemoveReport::default()
            };
        }
        let jobs = self.inflight.remove(consumer).unwrap_or_default();
        let requeued = jobs.len();
        self.active.extend(jobs);
        self.consumers.remove(consumer);
        if requeued > 0 {
            self.set_signal();
        }
        RemoveReport {
            removed: true,
            requeued,
            heartbeat: Some(heartbeat),
        }
    }

    pub(super) fn set_paused(&mut self, paused: bool) -> bool {
        let was = self.paused;
        self.paused = paused;
        if was && !paused {
            self.set_signal();
        }
        was
    }

    pub(super) fn data_ids(&self, cursor: u64, count: usize) -> (Vec<String>, Option<u64>) {
        let mut ids: Vec<&String> = self.data.keys().collect();
        ids.sort_unstable();
        let start = usize::try_from(cursor).unwrap_or(usize::MAX);
        let page: Vec<String> = ids
            .iter()
            .skip(start)
            .take(count.max(1))
            .map(|id| (*id).clone())
            .collect();
        let end = start.saturating_add(page.len());
        (page, (end < ids.len()).then_some(end as u64))
    }

    pub(super) fn stray(&self) -> Vec<(String, BTreeSet<String>)> {
        let mut out: Vec<(String, BTreeSet<String>)> = self
            .inflight
            .iter()
            .filter(|(consumer, _)| !self.consumers.contains(consumer))
            .map(|(consumer, set)| (consumer.clone(), set.clone()))
            .collect();
        out.sort();
        out
    }

    /// Every place `id` is referenced now (registered consumers only), in [`JobState`]
    /// order, one entry per occurrence.
    fn places(&self, id: &str) -> Vec<JobState> {
        let mut places: Vec<JobState> = self
            .active
            .iter()
            .filter(|a| *a == id)
            .map(|_| JobState::Active)
            .collect();
        if self.scheduled.contains(id) {
            places.push(JobState::Scheduled);
        }
        if self.dead.contains(id) {
            places.push(JobState::Dead);
        }
        for (_, set) in self.registered_inflight() {
            if set.contains(id) {
                places.push(JobState::InFlight);
            }
        }
        places
    }

    pub(super) fn confirm(&self, problem: &Problem) -> Option<Problem> {
        let places = match problem.kind {
            ProblemKind::StrayInFlight => {
                let set = self.inflight.get(&problem.id)?;
                if self.consumers.contains(&problem.id) {
                    return None;
                }
                vec![JobState::InFlight; set.len()]
            }
            kind => {
                let places = self.places(&problem.id);
                let has_data = self.data.contains_key(&problem.id);
                let holds = match kind {
                    ProblemKind::Unreferenced => has_data && places.is_empty(),
                    ProblemKind::Duplicate => places.len() > 1,
                    _ => !has_data && !places.is_empty(),
                };
                if !holds {
                    return None;
                }
                places
            }
        };
        Some(Problem {
            kind: problem.kind,
            id: problem.id.clone(),
            places,
        })
    }

    pub(super) fn repair(&mut self, problem: &Problem) -> bool {
        if self.confirm(problem).is_none() {
            return false;
        }
        let id = problem.id.as_str();
        match problem.kind {
            ProblemKind::Unreferenced => {
                self.active.push_back(id.to_owned());
                self.set_signal();
                true
            }
            ProblemKind::Duplicate => {
                let places = self.places(id);
                let inflight = places.iter().filter(|p| **p == JobState::InFlight).count();
                let active = places.iter().filter(|p| **p == JobState::Active).count();
                if inflight > 1 {
                    // Held twice: the consumer whose ID sorts first keeps it (as the
                    // script keeps the in-flight key that sorts first).
                    let holders: Vec<String> = self
                        .registered_inflight()
                        .into_iter()
                        .filter(|(_, set)| set.contains(id))
                        .map(|(c, _)| c.to_owned())
                        .collect();
                    for other in holders.iter().skip(1) {
                        self.disown(other, id);
                    }
                }
                let keep = if inflight >= 1 {
                    JobState::InFlight
                } else if self.scheduled.contains(id) {
                    JobState::Scheduled
                } else if active > 0 {
                    JobState::Active
                } else {
                    JobState::Dead
                };
                if keep == JobState::Active {
                    // Keep the occurrence nearest the head.
                    let mut seen = false;
                    self.active.retain(|a| {
                        if a != id {
                            return true;
                        }
                        let first = !seen;
                        seen = true;
                        first
                    });
                } else {
                    self.active.retain(|a| a != id);
                }
                if keep != JobState::Scheduled {
                    self.scheduled.remove(id);
                }
                if keep != JobState::Dead && self.dead.remove(id).is_some() {
                    self.reasons.remove(id);
                }
                true
            }
            ProblemKind::Dangling => {
                let before = self.active.len();
                self.active.retain(|a| a != id);
                let mut changed = self.active.len() < before;
                changed |= self.scheduled.remove(id).is_some();
                changed |= self.dead.remove(id).is_some();
                // The job has no data: only its side fields go (as the script counts them).
                changed |= self.reasons.remove(id).is_some();
                changed |= self.errors.remove(id).is_some();
                changed |= self.orphaned.remove(id).is_some();
                changed
            }
            ProblemKind::StrayInFlight => {
                let jobs = self.inflight.remove(id).unwrap_or_default();
                let moved = !jobs.is_empty();
                self.active.extend(jobs);
                if moved {
                    self.set_signal();
                }
                moved
            }
        }
    }
}

/// The error of a purge of a state other than active, scheduled or dead.
pub(crate) fn purge_refused(state: JobState) -> BackendError {
    BackendError::Rejected(format!(
        "cannot purge {state} jobs: purge applies to active, scheduled or dead jobs \
         (in-flight jobs belong to their consumers)"
    ))
}
