//! The topics: the input and the one list of output topics, from which topic
//! creation, the positions recorded at each checkpoint, the routing of the
//! pipeline's outputs and the webhook fan-out are all derived.

use serde::{Deserialize, Serialize};
use veriflow_common::config::{ConfigError, Validate, ensure};
use veriflow_connectors::stream::TopicSpec;
use veriflow_pipelines::Output;

/// What an output topic holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputTopic {
    Outcomes,
    Features,
    Scored,
    Dlq,
    Late,
    Alerts,
    RouteStats,
}

impl OutputTopic {
    /// Every output topic, in the order they are described.
    pub const ALL: [OutputTopic; 7] = [
        OutputTopic::Outcomes,
        OutputTopic::Features,
        OutputTopic::Scored,
        OutputTopic::Dlq,
        OutputTopic::Late,
        OutputTopic::Alerts,
        OutputTopic::RouteStats,
    ];

    /// Its records carry the identity of the output they hold, so a replay
    /// after a crash recognises them and writes each once. The route
    /// statistics are state (latest per key), compacted, not a record stream.
    pub fn exactly_once(self) -> bool {
        !matches!(self, OutputTopic::RouteStats)
    }

    /// `cleanup.policy=compact`.
    pub fn compacted(self) -> bool {
        matches!(self, OutputTopic::RouteStats)
    }

    /// The `[topics]` key naming it.
    pub fn key(self) -> &'static str {
        match self {
            OutputTopic::Outcomes => "outcomes",
            OutputTopic::Features => "features",
            OutputTopic::Scored => "scored",
            OutputTopic::Dlq => "dlq",
            OutputTopic::Late => "late",
            OutputTopic::Alerts => "alerts",
            OutputTopic::RouteStats => "route_stats",
        }
    }

    /// Where a pipeline output is written; `None` for what goes elsewhere
    /// (KPI windows and forecasts go to InfluxDB).
    pub fn of(output: &Output) -> Option<OutputTopic> {
        match output {
            Output::Outcome(_) => Some(OutputTopic::Outcomes),
            Output::Features(_) => Some(OutputTopic::Features),
            Output::Scored(_) => Some(OutputTopic::Scored),
            Output::Rejected(r) if r.rejection.reason.is_dead_letter() => Some(OutputTopic::Dlq),
            Output::Rejected(_) => Some(OutputTopic::Late),
            Output::Alert(_) => Some(OutputTopic::Alerts),
            Output::Kpi(_) | Output::Forecast(_) => None,
        }
    }
}

/// `[topics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    pub input: String,
    pub outcomes: String,
    /// One feature vector per accepted request.
    pub features: String,
    /// Compacted: each partition's route statistics, read by every instance.
    pub route_stats: String,
    pub dlq: String,
    pub late: String,
    /// Alerts (`kpi.alert`, `route.degraded`), for the webhook fan-out.
    pub alerts: String,
    /// One scored record per accepted request (when `[scoring] models` is set).
    pub scored: String,
    /// Create missing topics at start.
    pub create_missing: bool,
    /// Partitions for topics veriflow creates.
    pub partitions: i32,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            input: "verifications".into(),
            outcomes: "verifications.outcomes".into(),
            features: "verifications.features".into(),
            route_stats: "veriflow.route-stats".into(),
            dlq: "verifications.dlq".into(),
            late: "verifications.late".into(),
            alerts: "veriflow.alerts".into(),
            scored: "verifications.scored".into(),
            create_missing: true,
            partitions: 4,
        }
    }
}

impl TopicsConfig {
    /// The name of an output topic.
    pub fn name(&self, topic: OutputTopic) -> &str {
        match topic {
            OutputTopic::Outcomes => &self.outcomes,
            OutputTopic::Features => &self.features,
            OutputTopic::Scored => &self.scored,
            OutputTopic::Dlq => &self.dlq,
            OutputTopic::Late => &self.late,
            OutputTopic::Alerts => &self.alerts,
            OutputTopic::RouteStats => &self.route_stats,
        }
    }

    /// The topics to create when missing: the input and every output.
    pub fn specs(&self) -> Vec<TopicSpec> {
        let spec = |name: &str, compacted| TopicSpec {
            name: name.to_owned(),
            partitions: self.partitions,
            compacted,
        };
        std::iter::once(spec(&self.input, false))
            .chain(
                OutputTopic::ALL
                    .iter()
                    .map(|t| spec(self.name(*t), t.compacted())),
            )
            .collect()
    }

    /// The output topics whose ends a checkpoint records (each written
    /// exactly once across crashes).
    pub fn exactly_once(&self) -> impl Iterator<Item = &str> {
        OutputTopic::ALL
            .into_iter()
            .filter(|t| t.exactly_once())
            .map(|t| self.name(t))
    }
}

impl Validate for TopicsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        ensure(!self.input.trim().is_empty(), "input", "must not be empty")?;
        let mut seen = std::collections::BTreeMap::new();
        seen.insert(self.input.as_str(), "input");
        for t in OutputTopic::ALL {
            let name = self.name(t);
            ensure(!name.trim().is_empty(), t.key(), "must not be empty")?;
            ensure(
                name.len() <= 249
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
                t.key(),
                format!("{name:?} is not a Kafka topic name (letters, digits, . _ -, at most 249)"),
            )?;
            if let Some(other) = seen.insert(name, t.key()) {
                return Err(ConfigError::new(
                    t.key(),
                    format!("{name:?} is also topics.{other}"),
                ));
            }
        }
        ensure(
            (1..=10_000).contains(&self.partitions),
            "partitions",
            "must be between 1 and 10000",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_topic_is_created_and_all_but_state_are_exactly_once() {
        let t = TopicsConfig::default();
        let specs = t.specs();
        assert_eq!(specs.len(), 1 + OutputTopic::ALL.len());
        assert!(specs.iter().any(|s| s.name == t.scored));
        assert!(
            specs
                .iter()
                .filter(|s| s.compacted)
                .all(|s| s.name == t.route_stats)
        );
        let once: Vec<&str> = t.exactly_once().collect();
        assert!(once.contains(&t.scored.as_str()));
        assert!(!once.contains(&t.route_stats.as_str()));
    }

    #[test]
    fn topics_must_be_distinct() {
        let t = TopicsConfig {
            late: "verifications.dlq".into(),
            ..TopicsConfig::default()
        };
        let e = t.validate().unwrap_err();
        assert_eq!(e.key, "late");
    }
}
