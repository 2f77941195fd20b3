//! Runs the HTTP API (crate `veriflow-api`) on a tokio runtime of its own, so it
//! never competes with the processing thread of `veriflow run`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use veriflow_api::ApiConfig;
use veriflow_api::webhooks::WebhooksConfig;

use crate::error::{Context, Result};

pub struct ApiServer {
    pub addr: SocketAddr,
    /// For publishing to tenants' webhooks from outside the API.
    pub webhooks: veriflow_api::webhooks::Webhooks,
    /// The API's runtime, where webhook publishing runs.
    pub runtime: tokio::runtime::Handle,
    /// Tenants' scoring settings, kept fresh by the API (the stream reads them).
    pub scoring_settings: Arc<veriflow_api::scoring::TenantScoring>,
    scorer: veriflow_api::scoring::ScorerSlot,
    sql: veriflow_api::sql::SqlSlot,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<()>>,
}

impl ApiServer {
    /// Connects the store, binds `api.listen` and serves until `shutdown` is set.
    /// Errors in start-up (bad database URL, port taken) are returned here.
    pub fn start(
        api_config: &ApiConfig,
        webhooks: &WebhooksConfig,
        shutdown: Arc<AtomicBool>,
    ) -> Result<ApiServer> {
        let Some(listen) = api_config.listen.clone() else {
            return Err(crate::invalid!("api.listen is \"off\""));
        };
        if api_config.operator_token.is_none() {
            tracing::warn!(
                "api.operator_token is empty: tenant administration is closed \
                 (set VERIFLOW_API__OPERATOR_TOKEN)"
            );
        }
        let database = redact(&api_config.database_url);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("api")
            .enable_all()
            .build()
            .context("starting the API runtime")?;
        let (api, listener) = runtime.block_on(async {
            let api = veriflow_api::Api::start(api_config.clone(), webhooks.clone())
                .await
                .with_context(|| format!("starting the API on database {database}"))?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding api.listen = {listen}"))?;
            Ok::<_, crate::RuntimeError>((api, listener))
        })?;
        let addr = listener.local_addr().context("reading the API's address")?;
        let webhooks = api.webhooks().clone();
        let scoring_settings = api.scoring_settings();
        let scorer = api.scorer_slot();
        let sql = api.sql_slot();
        let handle = runtime.handle().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_requested = stop.clone();
        tracing::info!(%addr, store = ?api.store().backend(), database = %database, "API listening");
        let thread = std::thread::Builder::new()
            .name("api".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let stop = async move {
                        while !shutdown.load(Ordering::Relaxed)
                            && !stop_requested.load(Ordering::Relaxed)
                        {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    };
                    api.serve(listener, stop).await.context("serving the API")
                })
            })
            .context("starting the API thread")?;
        Ok(ApiServer {
            addr,
            webhooks,
            runtime: handle,
            scoring_settings,
            scorer,
            sql,
            stop,
            thread,
        })
    }

    /// Serves `POST /v1/route` and `/v1/score` from `scorer`.
    pub fn attach_scorer(&self, scorer: Arc<dyn veriflow_api::scoring::LiveScorer>) {
        let _ = self.scorer.set(scorer);
    }

    /// Serves `POST /v1/sql` from the lake `config` names (nothing when
    /// `lake.dir` is off).
    pub fn attach_sql(&self, config: &crate::config::Config) -> Result<()> {
        if let Some(sql) = crate::sql::open(config)? {
            let _ = self.sql.set(Arc::new(crate::sql::LakeQueries(sql)));
        }
        Ok(())
    }

    /// Stops serving (in-flight requests finish) and waits for it.
    pub fn stop_and_join(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits for the server to drain (after shutdown was set).
    pub fn join(self) -> Result<()> {
        self.thread
            .join()
            .map_err(|_| crate::invalid!("the API thread panicked"))?
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://vf:secret@db:5432/vf"),
            "postgres://vf:***@db:5432/vf"
        );
        assert_eq!(super::redact("sqlite://var/x.db"), "sqlite://var/x.db");
    }
}
