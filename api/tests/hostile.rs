//! The API under hostile input, on SQLite and PostgreSQL alike: bodies that
//! are not objects, text with NUL, numbers in every JSON form, generated
//! documents of any shape and depth against every route that takes a body —
//! always a 4xx problem, never a 5xx, never a different answer per store.
//! And the protocol corners: `WWW-Authenticate`, `Accept-Language` weights,
//! the API's metrics behind the operator's token.

mod common;

use common::{Db, OPERATOR, TestApi};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

on_both_databases!(
    bodies_must_be_objects_on_every_route,
    nul_is_refused_the_same_on_both_stores,
    integers_in_float_form_and_limits_follow_the_schema,
    unauthorized_answers_say_how_to_authenticate,
    metrics_are_the_operators_only,
    accept_language_weights_decide,
    tenants_publish_and_list_their_own_messages,
);

/// Every operation with a JSON request body, with its path made concrete.
async fn body_routes(t: &TestApi) -> Vec<(String, String)> {
    let doc = t.call("GET", "/openapi.json", None, None, &[]).await;
    let mut out = Vec::new();
    for (path, item) in doc.ok()["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_some() {
                let concrete = path
                    .replace("{id}", "acme")
                    .replace("{service}", "login")
                    .replace("{locale}", "en");
                out.push((method.to_uppercase(), concrete));
            }
        }
    }
    assert!(out.len() >= 10, "{out:?}");
    out
}

async fn bodies_must_be_objects_on_every_route(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    for (method, path) in body_routes(&t).await {
        let key = if path == "/v1/tenants" {
            OPERATOR
        } else {
            &admin
        };
        for body in [
            json!(["name", "viewer"]),
            json!([null, null]),
            json!("a string"),
            json!(3),
            json!(null),
            json!(true),
        ] {
            let r = t
                .call(&method, &path, Some(key), Some(body.clone()), &[])
                .await;
            // 404 for a route about a resource that does not exist is fine
            // only after the body was judged: here every answer is the body's.
            assert_eq!(
                r.problem(422),
                "invalid_body",
                "{method} {path} {body}: {}",
                r.text
            );
        }
    }
}

async fn nul_is_refused_the_same_on_both_stores(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    let cases = [
        (
            "POST",
            "/v1/auth/keys",
            json!({"name": "a\u{0}b", "role": "viewer"}),
        ),
        (
            "POST",
            "/v1/tenants",
            json!({"id": "nul", "name": "Nul\u{0}Inc"}),
        ),
        (
            "PATCH",
            "/v1/tenants/acme",
            json!({"branding": {"company_name": "\u{0}"}}),
        ),
        (
            "PUT",
            "/v1/templates/login/en",
            json!({"source": "login = code { $code }\u{0}"}),
        ),
        (
            "POST",
            "/v1/templates/render",
            json!({"service": "login", "variables": {"code": "1\u{0}"}}),
        ),
        (
            "POST",
            "/v1/webhooks/endpoints",
            json!({"url": "https://a.example.com/", "description": "x\u{0}"}),
        ),
        (
            "POST",
            "/v1/webhooks/messages",
            json!({"event_type": "app.x", "payload": {"k\u{0}": 1}}),
        ),
    ];
    for (method, path, body) in cases {
        let key = if path == "/v1/tenants" {
            OPERATOR
        } else {
            &admin
        };
        let r = t
            .call(method, path, Some(key), Some(body.clone()), &[])
            .await;
        assert_eq!(r.problem(422), "invalid_body", "{method} {path}");
        assert!(r.text.contains("NUL"), "{}", r.text);
    }
    // And in a path or a query.
    let r = t.get("/v1/templates/log%00in/en", &admin).await;
    assert_eq!(r.problem(422), "invalid_parameter");
    let r = t.get("/v1/webhooks/messages?event_type=a%00", &admin).await;
    assert_eq!(r.problem(422), "invalid_parameter");
}

async fn integers_in_float_form_and_limits_follow_the_schema(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    let r = t
        .call(
            "POST",
            "/v1/webhooks/endpoints",
            Some(&admin),
            Some(json!({"url": "https://hooks.example.com/a", "rate_limit": 3446.0})),
            &[],
        )
        .await;
    assert_eq!(
        r.ok()["rate_limit"],
        3446,
        "3446.0 is an integer: {}",
        r.text
    );
    let ep = r.json["id"].as_str().unwrap().to_string();
    let r = t
        .call(
            "POST",
            "/v1/webhooks/endpoints",
            Some(&admin),
            Some(json!({"url": "https://hooks.example.com/b", "rate_limit": 0})),
            &[],
        )
        .await;
    assert_eq!(
        r.problem(422),
        "invalid_request",
        "the schema's minimum is 1"
    );
    let r = t
        .call(
            "POST",
            "/v1/webhooks/endpoints",
            Some(&admin),
            Some(json!({"url": "https://hooks.example.com/b", "rate_limit": 1.5})),
            &[],
        )
        .await;
    assert_eq!(r.problem(422), "invalid_body");
    assert!(r.text.contains("rate_limit"), "{}", r.text);
    for limit in ["0", "1001"] {
        let r = t
            .get(
                &format!("/v1/webhooks/endpoints/{ep}/attempts?limit={limit}"),
                &admin,
            )
            .await;
        assert_eq!(r.status, 422, "limit={limit}: {}", r.text);
    }
    assert!(
        t.get(
            &format!("/v1/webhooks/endpoints/{ep}/attempts?limit=1"),
            &admin
        )
        .await
        .status
        .is_success()
    );
}

async fn unauthorized_answers_say_how_to_authenticate(db: Db) {
    let t = TestApi::new(db).await;
    for key in [None, Some("vf_nope_nope")] {
        let r = t.call("GET", "/v1/tenants", key, None, &[]).await;
        assert_eq!(r.status, 401);
        let challenge = r
            .headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(challenge.starts_with("Bearer "), "{challenge:?}");
        assert!(challenge.contains("x-api-key"), "{challenge:?}");
    }
}

async fn metrics_are_the_operators_only(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &["verify.acme.com"]).await;
    let bearer = |k: &str| format!("Bearer {k}");
    assert_eq!(
        t.call("GET", "/metrics", None, None, &[])
            .await
            .problem(401),
        "unauthorized"
    );
    let tenant = bearer(&admin);
    let r = t
        .call("GET", "/metrics", None, None, &[("authorization", &tenant)])
        .await;
    assert_eq!(r.problem(401), "unauthorized", "a tenant's key is refused");
    let r = t.call("GET", "/metrics", Some(&admin), None, &[]).await;
    assert_eq!(r.status, 401, "x-api-key of a tenant too");
    let operator = bearer(OPERATOR);
    let r = t
        .call(
            "GET",
            "/metrics",
            None,
            None,
            &[("authorization", &operator), ("host", "verify.acme.com")],
        )
        .await;
    assert_eq!(r.problem(404), "not_found", "never on a tenant's domain");
    let r = t
        .call(
            "GET",
            "/metrics",
            None,
            None,
            &[("authorization", &operator)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("veriflow_api_http_requests"), "{}", r.text);
}

async fn accept_language_weights_decide(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    let render = |header: &'static str| {
        let t = &t;
        let admin = admin.clone();
        async move {
            let r = t
                .call(
                    "POST",
                    "/v1/templates/render",
                    Some(&admin),
                    Some(json!({"service": "login", "variables": {"code": "1", "minutes": 3}})),
                    &[("accept-language", header)],
                )
                .await;
            r.ok()["locale"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(render("fr;q=0.1, es;q=0.9").await, "es");
    assert_eq!(render("fr, es;q=0").await, "fr");
    assert_eq!(render("es;q=0, *").await, "en");
    assert_eq!(
        render("pt-BR;q=0, pt;q=0.8, ar;q=0.7").await,
        "pt",
        "refusing a region leaves the language"
    );
    assert_eq!(
        render("pt;q=0, pt-BR;q=0.9, ar;q=0.7").await,
        "ar",
        "refusing the language refuses its regions"
    );
}

async fn tenants_publish_and_list_their_own_messages(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    let endpoint = |types: Value, filter: Value| {
        let t = &t;
        let admin = admin.clone();
        async move {
            let r = t
                .call(
                    "POST",
                    "/v1/webhooks/endpoints",
                    Some(&admin),
                    Some(json!({"url": "https://hooks.example.com/in", "event_types": types, "filter": filter})),
                    &[],
                )
                .await;
            r.ok()["id"].as_str().unwrap().to_owned()
        }
    };
    let br = endpoint(json!(["app.order.shipped"]), json!("country == 'BR'")).await;
    let all = endpoint(json!([]), Value::Null).await;
    let publish = |payload: Value, key: Option<&'static str>| {
        let t = &t;
        let admin = admin.clone();
        async move {
            t.call(
                "POST",
                "/v1/webhooks/messages",
                Some(&admin),
                Some(json!({"event_type": "app.order.shipped", "payload": payload, "idempotency_key": key})),
                &[],
            )
            .await
        }
    };
    let first = publish(json!({"country": "BR", "order": 1}), Some("order-1")).await;
    assert_eq!(first.status, 202, "{}", first.text);
    assert_eq!(first.json["queued"], 2, "both endpoints want it");
    let again = publish(json!({"country": "BR", "order": 1}), Some("order-1")).await;
    assert_eq!(
        again.json["id"], first.json["id"],
        "same key, same webhook-id"
    );
    assert_eq!(again.json["queued"], 0, "nothing new is sent");
    let mx = publish(json!({"country": "MX"}), None).await;
    assert_eq!(
        mx.json["queued"], 1,
        "the BR filter keeps it from one endpoint"
    );
    let list = t
        .get("/v1/webhooks/messages?event_type=app.order.shipped", &admin)
        .await;
    let messages = list.ok()["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 2);
    let id = first.json["id"].as_str().unwrap();
    let one = t.get(&format!("/v1/webhooks/messages/{id}"), &admin).await;
    let endpoints: Vec<&str> = one.ok()["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["endpoint_id"].as_str().unwrap())
        .collect();
    assert!(endpoints.contains(&br.as_str()) && endpoints.contains(&all.as_str()));
    assert_eq!(one.json["body"]["type"], "app.order.shipped");
    assert_eq!(one.json["body"]["data"]["order"], 1);
    for bad in [
        json!({"event_type": "order.shipped", "payload": {}}),
        json!({"event_type": "app.x", "payload": [1]}),
        json!({"event_type": "app.x", "payload": {}, "idempotency_key": ""}),
    ] {
        let r = t
            .call(
                "POST",
                "/v1/webhooks/messages",
                Some(&admin),
                Some(bad),
                &[],
            )
            .await;
        assert_eq!(r.status, 422, "{}", r.text);
    }
    let types = t.get("/v1/webhooks/event-types", &admin).await;
    let names: Vec<&str> = types.ok()["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"fraud.flagged") && names.contains(&"kpi.alert"));
    assert!(types.json["event_types"][0]["schema"]["required"].is_array());
}

/// JSON documents of any shape: scalars, arrays and objects nested up to
/// past serde_json's limit, strings with NUL, lone surrogates as escapes are
/// not producible here (serde_json would not encode them), bidi controls.
fn document() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        "\\PC{0,40}",
        Just("\u{0}".to_owned()),
        Just("\u{202e}evil\u{202c}".to_owned()),
        Just("x".repeat(70_000)),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-z_]{1,12}",
                    Just("name".to_owned()),
                    Just("url".to_owned()),
                    Just("source".to_owned())
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Deeper than any generator reaches: `[[[[…]]]]` and `{"a":{"a":…}}`.
fn deep(depth: usize, object: bool) -> String {
    if object {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }
}

#[test]
fn generated_documents_get_problems_never_server_errors() {
    for db in [Db::Sqlite, Db::Postgres] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let t = rt.block_on(TestApi::new(db));
        let admin = rt.block_on(t.tenant("acme", &[]));
        let routes = rt.block_on(body_routes(&t));
        // Deep nesting, raw, past serde_json's recursion limit.
        for (method, path) in &routes {
            for raw in [deep(200, false), deep(200, true), deep(100_000, false)] {
                let r = rt.block_on(t.call_raw(method, path, Some(&admin), raw.as_bytes()));
                assert!(
                    (400..500).contains(&r.status.as_u16()),
                    "{db:?} {method} {path} deep: {}",
                    r.status
                );
                r.problem(r.status.as_u16());
            }
        }
        let mut runner = TestRunner::new(Config {
            cases: 300,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = (0..routes.len(), document());
        runner
            .run(&strategy, |(i, doc)| {
                let (method, path) = &routes[i];
                let key = if path == "/v1/tenants" {
                    OPERATOR
                } else {
                    &admin
                };
                let r = rt.block_on(t.call(method, path, Some(key), Some(doc.clone()), &[]));
                let status = r.status.as_u16();
                prop_assert!(
                    status < 500,
                    "{db:?} {method} {path} {doc}: {} {}",
                    status,
                    r.text
                );
                if status >= 400 {
                    r.problem(status);
                }
                Ok(())
            })
            .unwrap();
    }
}
