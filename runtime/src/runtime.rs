//! `veriflow run` and `veriflow api` as values: a [`Runtime`] owns every
//! thread and tokio runtime it starts and stops them in one declared order.
//!
//! Start-up is planned apart from started: [`plan`] reads and checks
//! everything the configuration names (KPI SQL, models) without creating
//! anything; only then are topics created, servers bound and threads started.
//!
//! Order of services (started top to bottom, stopped bottom to top):
//! 1. metrics server
//! 2. API (with the webhook delivery engine)
//! 3. model reload watchers
//! 4. route statistics follower
//! 5. webhook fan-out
//! 6. lake writer
//!
//! and the driver runs on the calling thread between start and stop; the KPI
//! sink closes with it. So the lake and the fan-out read up to what the driver
//! wrote last, the fan-out publishes while the API's database is still there,
//! and the API drains after the stream stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use veriflow_api::scoring::LiveScorer;
use veriflow_connectors::s3::S3Backend;
use veriflow_connectors::stream::{Broker, partitions_of};
use veriflow_pipelines::Engine;
use veriflow_pipelines::checkpoint::CheckpointStore;
use veriflow_pipelines::scoring::ScorerHandle;

use crate::api_host::ApiServer;
use crate::config::Config;
use crate::driver::{Driver, DriverOptions, Outputs, Stage};
use crate::error::{Context, Result};
use crate::fanout::FanOut;
use crate::kpi::{KpiPlan, KpiStage};
use crate::lake::LakeService;
use crate::metrics::{Metrics, MetricsServer, MetricsStage};
use crate::routes::GlobalRouteStats;
use crate::scoring::ScoringStage;
use crate::scoring::live::LiveScoring;
use crate::scoring::stream::StreamScorer;
use crate::summary::SummaryLog;

/// How a started service is stopped (and waited for).
type Stop = Box<dyn FnOnce() -> Result<()> + Send>;

/// The services started so far, stopped in reverse order.
#[derive(Default)]
pub struct Runtime {
    running: Vec<(&'static str, Stop)>,
}

impl Runtime {
    /// Registers a started service and how to stop it.
    pub fn started(
        &mut self,
        name: &'static str,
        stop: impl FnOnce() -> Result<()> + Send + 'static,
    ) {
        self.running.push((name, Box::new(stop)));
    }

    /// Stops every service, last started first; all are stopped even when one
    /// fails, and the first failure is returned.
    pub fn stop(mut self) -> Result<()> {
        let mut first = Ok(());
        while let Some((name, stop)) = self.running.pop() {
            tracing::debug!(service = name, "stopping");
            if let Err(e) = stop()
                && first.is_ok()
            {
                first = Err(e.context(format!("stopping the {name}")));
            }
        }
        first
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        while let Some((name, stop)) = self.running.pop() {
            if let Err(e) = stop() {
                tracing::warn!(service = name, error = %e, "stopping a service failed");
            }
        }
    }
}

/// What `run` will use, read and checked; nothing created yet.
pub struct Plan {
    kpi: Option<KpiPlan>,
    scoring: Option<Arc<ScoringStage>>,
}

/// Reads and checks what the configuration names: KPI SQL files (planned),
/// model versions (loaded, schema-checked). An error here means nothing was
/// created.
pub fn plan(config: &Config) -> Result<Plan> {
    let kpi = KpiStage::plan(config)?;
    let scoring = ScoringStage::load(&config.scoring, &config.pipeline)
        .context("loading [scoring] models")?
        .map(Arc::new);
    Ok(Plan { kpi, scoring })
}

/// `checkpoint.dir` is a directory, or `s3://bucket/prefix` for an object
/// store; one consumer group's checkpoints live under `<dir>/<group id>`.
fn checkpoint_store(config: &Config) -> Result<CheckpointStore> {
    let group = &config.kafka.group_id;
    let dir = config.checkpoint.dir.to_string_lossy();
    if dir.starts_with("s3://") {
        let url = format!("{}/{group}", dir.trim_end_matches('/'));
        let backend = S3Backend::from_url(&url).context("checkpoint.dir")?;
        Ok(CheckpointStore::with_backend(
            Arc::new(backend),
            config.checkpoint.keep,
        ))
    } else {
        Ok(CheckpointStore::new(
            config.checkpoint.dir.join(group),
            config.checkpoint.keep,
        ))
    }
}

/// How `run` ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Stop at the end of the input: decide everything still open, commit, exit.
    pub until_end: bool,
}

/// `veriflow run` on `broker`: the input topic through the engine to the
/// output topics, KPIs, webhooks and the API, until `shutdown` is set (or the
/// end of the input, with `until_end`).
pub fn run<B: Broker>(
    config: &Config,
    broker: &B,
    options: RunOptions,
    shutdown: Arc<AtomicBool>,
) -> Result<()> {
    let plan = plan(config)?;
    let mut runtime = Runtime::default();
    let result = start_and_drive(config, broker, options, shutdown, plan, &mut runtime);
    result.and(runtime.stop())
}

fn start_and_drive<B: Broker>(
    config: &Config,
    broker: &B,
    options: RunOptions,
    shutdown: Arc<AtomicBool>,
    plan: Plan,
    runtime: &mut Runtime,
) -> Result<()> {
    let topics = &config.topics;
    let group = &config.kafka.group_id;
    if topics.create_missing {
        broker
            .ensure_topics(&topics.specs())
            .context("creating topics")?;
    }
    let sink = broker.sink().context("starting the producer")?;
    let log = broker.log(group).context("starting the offsets reader")?;
    let store = checkpoint_store(config)?;
    tracing::info!(store = %store.describe(), "checkpoints");

    // 1. metrics
    let metrics = Arc::new(Metrics::default());
    if let Some(listen) = &config.metrics.listen {
        let server = MetricsServer::start(listen, metrics.clone())?;
        tracing::info!("metrics on http://{}/metrics", server.addr);
        runtime.started("metrics server", move || {
            server.stop();
            Ok(())
        });
    }
    // 2. API
    let api = match &config.api.listen {
        Some(_) => Some(Arc::new(ApiServer::start(
            &config.api,
            &config.webhooks,
            shutdown.clone(),
        )?)),
        None => None,
    };
    if let Some(api) = &api {
        let api = api.clone();
        runtime.started("API", move || match Arc::try_unwrap(api) {
            Ok(api) => api.stop_and_join(),
            Err(_) => Err(crate::invalid!("the API is still in use")),
        });
    }
    if let Some(api) = &api {
        api.attach_sql(config)?;
    }
    // 3. models
    if let Some(stage) = &plan.scoring {
        let stage = stage.clone();
        runtime.started("model reload", move || {
            stage.stop();
            Ok(())
        });
    }
    // 4. route statistics
    let routes = Arc::new(GlobalRouteStats::default());
    {
        let stop = Arc::new(AtomicBool::new(false));
        let view = routes.clone();
        let follower: JoinHandle<()> = broker
            .follow(
                group,
                topics.name(crate::topics::OutputTopic::RouteStats),
                stop.clone(),
                Box::new(move |_, value| view.update(value)),
            )
            .context("following the route statistics")?;
        runtime.started("route statistics follower", move || {
            stop.store(true, Ordering::Relaxed);
            let _ = follower.join();
            Ok(())
        });
    }

    let mut pipeline = config.pipeline_config();
    if let Some(kpi) = &plan.kpi {
        pipeline.kpi_hops = kpi.hops().to_vec();
    }
    if let Some(stage) = &plan.scoring {
        pipeline.scorer = Some(ScorerHandle(Arc::new(StreamScorer {
            stage: stage.clone(),
            settings: api.as_ref().map(|a| a.scoring_settings.clone()),
        })));
    }
    let engine = Engine::new(pipeline, topics.input.clone(), Some(store));
    if let (Some(api), Some(stage)) = (&api, &plan.scoring) {
        let scorer: Arc<dyn LiveScorer> = Arc::new(LiveScoring {
            stage: stage.clone(),
            features: engine.live_features(),
        });
        api.attach_scorer(scorer);
    }
    // 5. fan-out: webhooks live with the API's database; no API, no fan-out.
    if let Some(api) = &api
        && config.webhooks.enabled
        && config.webhooks.fan_out
    {
        let fan_out = FanOut::start(
            broker,
            group,
            topics,
            config.kafka.resume_rewind,
            api.webhooks.clone(),
            api.runtime.clone(),
        )?;
        runtime.started("webhook fan-out", move || {
            fan_out.stop_and_join();
            Ok(())
        });
    }

    // 6. lake
    if let Some(lake) = LakeService::start(
        broker,
        group,
        topics,
        config.kafka.resume_rewind,
        &config.lake,
    )? {
        runtime.started("lake writer", move || {
            lake.stop_and_join();
            Ok(())
        });
    }

    let mut stages: Vec<Box<dyn Stage>> = vec![
        Box::new(SummaryLog::default()),
        Box::new(MetricsStage {
            metrics: metrics.clone(),
            log: Some(log.clone()),
            input: topics.input.clone(),
            routes: Some(routes.clone()),
        }),
    ];
    let mut pressure = None;
    if let Some(kpi) = plan.kpi {
        let kpi = kpi.start()?.with_metrics(metrics.clone());
        pressure = Some(Arc::new(kpi.backlog()));
        stages.push(Box::new(kpi));
    }
    let driver_options = DriverOptions {
        checkpoint_interval: config.checkpoint.interval,
        idle_timeout: config.pipeline.idle_timeout,
        until_end: options.until_end,
        resume_rewind: config.kafka.resume_rewind,
        input_partitions: partitions_of(&*log, &topics.input)
            .context("reading the input topic's partitions")?,
        wall_clock: true,
        ..DriverOptions::default()
    };
    let outputs = Outputs {
        sink,
        log,
        topics: topics.clone(),
    };
    let mut driver = Driver::new(engine, Some(outputs), stages, driver_options);
    if let Some(p) = pressure {
        driver = driver.with_pressure(p);
    }
    let source = broker
        .subscribe(group, &topics.input, driver.listener())
        .context("joining the consumer group")?;
    tracing::info!(brokers = %broker.describe(), group = %group, topic = %topics.input, "consuming");
    driver.run(source, &shutdown)
}

/// `veriflow api`: the HTTP API alone, until `shutdown` is set.
pub fn serve_api(config: &Config, shutdown: Arc<AtomicBool>) -> Result<()> {
    let server = ApiServer::start(&config.api, &config.webhooks, shutdown)?;
    server.attach_sql(config)?;
    eprintln!("veriflow API on http://{}/ (Ctrl-C stops)", server.addr);
    server.join()
}
