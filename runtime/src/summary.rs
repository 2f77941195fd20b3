//! The live summary shown by `demo` and logged by `run`: throughput, verifications in
//! flight, conversion by country and provider, dead letters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use veriflow_pipelines::{Engine, OutcomeKind, Output, RejectReason};

use crate::driver::Stage;

#[derive(Default, Clone, Copy)]
struct Conversion {
    approved: u64,
    total: u64,
}

impl Conversion {
    fn add(&mut self, approved: bool) {
        self.total += 1;
        self.approved += u64::from(approved);
    }
    fn rate(self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.approved as f64 / self.total as f64
        }
    }
}

pub struct Summary {
    by_country: BTreeMap<String, Conversion>,
    /// Attributed to the provider of the last attempt.
    by_provider: BTreeMap<String, Conversion>,
    approved: u64,
    expired: u64,
    failed_attempts: u64,
    rejected: BTreeMap<RejectReason, u64>,
    /// The latest alerts fired (event time, text), newest last.
    alerts: Vec<(i64, String)>,
    last_tick: Instant,
    last_received: u64,
}

/// Engine-wide counters the summary cannot see in the outputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub received: u64,
    pub in_flight: u64,
    pub duplicates: u64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            by_country: BTreeMap::new(),
            by_provider: BTreeMap::new(),
            approved: 0,
            expired: 0,
            failed_attempts: 0,
            rejected: BTreeMap::new(),
            alerts: Vec::new(),
            last_tick: Instant::now(),
            last_received: 0,
        }
    }
}

impl Summary {
    pub fn observe(&mut self, output: &Output) {
        match output {
            Output::Outcome(o) => {
                let approved = o.outcome == OutcomeKind::Approved;
                if approved {
                    self.approved += 1
                } else {
                    self.expired += 1
                }
                self.failed_attempts += u64::from(o.failed_attempts());
                self.by_country
                    .entry(o.country.to_string())
                    .or_default()
                    .add(approved);
                if let Some(p) = o.providers.last() {
                    self.by_provider
                        .entry(p.to_string())
                        .or_default()
                        .add(approved);
                }
            }
            Output::Rejected(r) => *self.rejected.entry(r.rejection.reason).or_default() += 1,
            Output::Alert(a) => {
                self.alerts.push((
                    a.at,
                    format!("{} [{}] {}", a.event_type, a.severity, a.message),
                ));
                if self.alerts.len() > 5 {
                    self.alerts.remove(0);
                }
            }
            Output::Features(_) | Output::Scored(_) | Output::Kpi(_) | Output::Forecast(_) => {}
        }
    }

    pub fn dead_letters(&self) -> u64 {
        self.rejected
            .iter()
            .filter(|(r, _)| r.is_dead_letter())
            .map(|(_, n)| n)
            .sum()
    }

    fn count(&self, reason: RejectReason) -> u64 {
        self.rejected.get(&reason).copied().unwrap_or(0)
    }

    /// Events per second since the previous call.
    pub fn tick_rate(&mut self, received: u64) -> f64 {
        let elapsed = self.last_tick.elapsed().as_secs_f64().max(1e-9);
        let rate = (received - self.last_received.min(received)) as f64 / elapsed;
        self.last_tick = Instant::now();
        self.last_received = received;
        rate
    }

    /// A one-line form for logs.
    pub fn line(&self, g: Gauges, events_per_s: f64) -> String {
        let decided = self.approved + self.expired;
        format!(
            "events/s={events_per_s:.0} received={} in_flight={} decided={decided} conversion={:.1}% dead_letters={} late={} orphans={}",
            g.received,
            g.in_flight,
            100.0 * self.approved as f64 / decided.max(1) as f64,
            self.dead_letters(),
            self.count(RejectReason::Late),
            self.count(RejectReason::Orphan),
        )
    }

    /// The multi-line table for the terminal.
    pub fn table(&self, g: Gauges, events_per_s: f64, header: &str) -> String {
        let decided = self.approved + self.expired;
        let mut s = String::new();
        let _ = writeln!(s, "{header}");
        let _ = writeln!(
            s,
            "  events/s {events_per_s:>10.0}   received {:>10}   duplicates {:>7}   in flight {:>8}",
            g.received, g.duplicates, g.in_flight
        );
        let _ = writeln!(
            s,
            "  decided  {decided:>10}   approved {:>10}   expired {:>10}   conversion {:>6.1}%   failed attempts {}",
            self.approved,
            self.expired,
            100.0 * self.approved as f64 / decided.max(1) as f64,
            self.failed_attempts
        );
        let _ = writeln!(
            s,
            "  dead letters {:>6}   late {:>6}   orphans {:>6}",
            self.dead_letters(),
            self.count(RejectReason::Late),
            self.count(RejectReason::Orphan)
        );
        for (title, table) in [
            ("country", &self.by_country),
            ("provider", &self.by_provider),
        ] {
            let _ = writeln!(s, "  conversion by {title}:");
            let mut rows: Vec<_> = table.iter().collect();
            rows.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(b.0)));
            for chunk in rows.chunks(4) {
                let cells: Vec<String> = chunk
                    .iter()
                    .map(|(k, c)| format!("{k:>12} {:>5.1}% of {:<7}", 100.0 * c.rate(), c.total))
                    .collect();
                let _ = writeln!(s, "  {}", cells.join(" "));
            }
        }
        if !self.alerts.is_empty() {
            let _ = writeln!(s, "  latest alerts:");
            for (at, text) in &self.alerts {
                let _ = writeln!(
                    s,
                    "    {}  {text}",
                    veriflow_pipelines::time::format_rfc3339(*at)
                );
            }
        }
        if self.dead_letters() > 0 {
            let reasons: Vec<String> = self
                .rejected
                .iter()
                .filter(|(r, _)| r.is_dead_letter())
                .map(|(r, n)| format!("{}={n}", r.as_str()))
                .collect();
            let _ = writeln!(s, "  dead letters by reason: {}", reasons.join(" "));
        }
        s
    }
}

impl Gauges {
    pub fn of(engine: &Engine) -> Gauges {
        let stats = engine.stats();
        Gauges {
            received: stats.received,
            in_flight: engine.in_flight() as u64,
            duplicates: stats.duplicates,
        }
    }
}

/// The driver's stage that logs the summary line every few seconds, and a
/// final one.
pub struct SummaryLog {
    summary: Summary,
    last_log: Instant,
}

const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Default for SummaryLog {
    fn default() -> Self {
        SummaryLog {
            summary: Summary::default(),
            last_log: Instant::now(),
        }
    }
}

impl Stage for SummaryLog {
    fn observe(&mut self, output: &Output) {
        self.summary.observe(output);
    }

    fn tick(&mut self, engine: &Engine) {
        if self.last_log.elapsed() >= LOG_EVERY {
            let gauges = Gauges::of(engine);
            let rate = self.summary.tick_rate(gauges.received);
            tracing::info!("{}", self.summary.line(gauges, rate));
            self.last_log = Instant::now();
        }
    }

    fn finish(&mut self, engine: &Engine) {
        let gauges = Gauges::of(engine);
        let rate = self.summary.tick_rate(gauges.received);
        let stats = engine.stats();
        tracing::info!(
            "final: {} suppressed_replays={} skipped_offsets={}",
            self.summary.line(gauges, rate),
            stats.suppressed,
            stats.skipped_offsets
        );
    }
}
