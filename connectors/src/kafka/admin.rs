use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use super::{KafkaConfig, KafkaConnectorError};
use crate::stream::TopicSpec;

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub fn ensure_topics(cfg: &KafkaConfig, topics: &[TopicSpec]) -> Result<(), KafkaConnectorError> {
    let mut client_cfg = cfg.client_config();
    cfg.apply_overrides(&mut client_cfg);
    let admin: AdminClient<DefaultClientContext> =
        client_cfg.create().map_err(KafkaConnectorError::Client)?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let topic = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(1));
            if t.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        futures_executor::block_on(admin.create_topics(&new_topics, &opts)).map_err(|source| {
            KafkaConnectorError::CreateTopic {
                topic: "*".into(),
                source,
            }
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaConnectorError::CreateTopic {
                    topic,
                    source: rdkafka::error::KafkaError::AdminOp(code),
                });
            }
        }
    }
    Ok(())
}
