//! Test harness: the real router (every layer) over a real database, SQLite in a
//! temporary file or a fresh PostgreSQL database on the stack's server.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::Connection;
use tower::ServiceExt;
use veriflow_api::webhooks::WebhooksConfig;
use veriflow_api::{Api, ApiConfig};

pub const OPERATOR: &str = "operator-secret-for-tests";

#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestApi {
    pub api: Api,
    _dir: Option<tempfile::TempDir>,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

impl Resp {
    /// Asserts a problem-details error with this status, returning its `code`.
    pub fn problem(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(
            self.headers
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some("application/problem+json"),
            "body: {}",
            self.text
        );
        assert_eq!(self.json["status"], status);
        assert!(self.json["title"].is_string() && self.json["detail"].is_string());
        let code = self.json["code"].as_str().expect("code").to_string();
        assert_eq!(self.json["type"], format!("urn:veriflow:problem:{code}"));
        code
    }

    pub fn ok(&self) -> &Value {
        assert!(self.status.is_success(), "{}: {}", self.status, self.text);
        &self.json
    }
}

pub fn postgres_admin_url() -> String {
    std::env::var("VERIFLOW_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into())
}

/// A new, empty database on the stack's PostgreSQL.
async fn fresh_postgres() -> String {
    let admin = postgres_admin_url();
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin} ({e}); start it with `scripts/stack.sh up`"
            )
        });
    let name = format!(
        "vf_test_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').expect("url has a database").0;
    format!("{base}/{name}")
}

impl TestApi {
    pub async fn new(db: Db) -> TestApi {
        TestApi::with(db, |_| {}).await
    }

    pub async fn with(db: Db, tweak: impl FnOnce(&mut ApiConfig)) -> TestApi {
        let (url, dir) = match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/api.db", dir.path().display());
                (url, Some(dir))
            }
            Db::Postgres => (fresh_postgres().await, None),
        };
        let mut config = ApiConfig {
            database_url: url,
            operator_token: Some(OPERATOR.into()),
            rate_limit_per_second: 10_000,
            rate_limit_burst: 10_000,
            ..ApiConfig::default()
        };
        // Secrets encrypted with a fixed test key, not a key file in the tree.
        let hooks = WebhooksConfig {
            encryption_key: Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
            ..WebhooksConfig::default()
        };
        tweak(&mut config);
        let api = Api::start(config, hooks).await.expect("api starts");
        TestApi { api, _dir: dir }
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let response = self.api.router().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            json,
            text,
        }
    }

    /// A JSON request with an optional API key (`x-api-key`) and extra headers.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path);
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(serde_json::to_vec(&v).unwrap())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    /// A request with raw bytes as its JSON body.
    pub async fn call_raw(&self, method: &str, path: &str, key: Option<&str>, body: &[u8]) -> Resp {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .header("content-type", "application/json");
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        self.send(req.body(Body::from(body.to_vec())).unwrap())
            .await
    }

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.call("GET", path, Some(key), None, &[]).await
    }

    /// Creates a tenant as the operator; returns its admin key.
    pub async fn tenant(&self, id: &str, domains: &[&str]) -> String {
        let r = self
            .call(
                "POST",
                "/v1/tenants",
                Some(OPERATOR),
                Some(json!({
                    "id": id,
                    "name": format!("{id} Inc"),
                    "region": "eu",
                    "domains": domains,
                    "branding": {"company_name": format!("{id} Co"), "primary_color": "#112233"},
                })),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json["admin_key"]["key"].as_str().unwrap().to_string()
    }

    /// Creates a key with `role` using an admin key.
    pub async fn key(&self, admin: &str, role: &str) -> (String, String) {
        let r = self
            .call(
                "POST",
                "/v1/auth/keys",
                Some(admin),
                Some(json!({"name": format!("{role} key"), "role": role})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        (
            r.json["id"].as_str().unwrap().to_string(),
            r.json["key"].as_str().unwrap().to_string(),
        )
    }
}

/// Runs each listed test against SQLite and against PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::common::Db::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::common::Db::Postgres).await } )*
        }
    };
}
