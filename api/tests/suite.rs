//! The API suite, run against SQLite and a real PostgreSQL (scripts/stack.sh up).

mod common;

use common::{Db, OPERATOR, TestApi};
use serde_json::json;

on_both_databases!(
    tenant_lifecycle,
    tenant_validation_errors,
    domains_are_unique_across_tenants,
    credentials_are_checked,
    host_domain_resolves_the_tenant,
    keys_are_shown_once_and_stored_hashed,
    cross_tenant_access_is_refused_on_every_route,
    roles_are_checked_per_route,
    malformed_requests_get_problem_bodies,
    rate_limit_answers_429_with_retry_after,
    usage_counts_requests_per_tenant,
    openapi_lists_every_served_route,
    templates_render_in_every_locale,
    arabic_plural_forms,
    locale_negotiation_and_fallback,
    tenant_overrides,
    invalid_overrides_are_refused,
    render_reports_sms_cost_and_branding,
    scoring_without_a_stream_is_a_clear_problem,
);

/// `veriflow api` alone has no stream: the scoring routes answer 503 (after
/// checking roles and the body); with a stream they are tested in
/// `tests/scoring_api.rs`.
async fn scoring_without_a_stream_is_a_clear_problem(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    let viewer = t.key(&admin, "viewer").await.1;
    let developer = t.key(&admin, "developer").await.1;
    let body = json!({"phone_number": "+5511987654321", "country": "BR"});
    for path in ["/v1/route", "/v1/score"] {
        let r = t
            .call("POST", path, Some(&viewer), Some(body.clone()), &[])
            .await;
        assert_eq!(r.problem(403), "forbidden", "{path}");
        let r = t
            .call("POST", path, Some(&developer), Some(body.clone()), &[])
            .await;
        assert_eq!(r.problem(503), "scoring_unavailable", "{path}");
        assert!(r.text.contains("veriflow run"), "{}", r.text);
        let r = t
            .call(
                "POST",
                path,
                Some(&developer),
                Some(
                    json!({"phone_number": "12345", "country": "br", "ip": "999.1.1.1",
                            "requested_at": "yesterday"}),
                ),
                &[],
            )
            .await;
        assert_eq!(r.problem(422), "invalid_request", "{path}");
        for field in ["phone_number", "country", "ip", "requested_at"] {
            assert!(r.text.contains(field), "{path}: {field} in {}", r.text);
        }
    }
}

async fn tenant_lifecycle(db: Db) {
    let t = TestApi::new(db).await;
    let r = t
        .call(
            "POST",
            "/v1/tenants",
            Some(OPERATOR),
            Some(json!({
                "id": "acme",
                "name": "Acme Inc",
                "region": "eu-west",
                "domains": ["verify.acme.com"],
                "branding": {
                    "company_name": "Acme",
                    "logo_url": "https://cdn.acme.com/logo.png",
                    "primary_color": "#FF6600",
                    "custom_css": ".btn { border-radius: 4px }"
                },
                "feature_flags": {"voice_fallback": true},
                "fraud_thresholds": {"review": 0.4, "block": 0.8},
                "providers": {"allow": ["twilio", "sinch"], "deny": ["cheap"], "max_cost_per_message": 0.05}
            })),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let tenant = &r.json["tenant"];
    assert_eq!(tenant["id"], "acme");
    assert_eq!(tenant["region"], "eu-west");
    assert_eq!(tenant["domains"], json!(["verify.acme.com"]));
    assert_eq!(tenant["branding"]["primary_color"], "#FF6600");
    assert_eq!(tenant["feature_flags"]["voice_fallback"], true);
    assert_eq!(tenant["fraud_thresholds"]["block"], 0.8);
    assert_eq!(tenant["providers"]["deny"], json!(["cheap"]));
    assert_eq!(r.json["admin_key"]["role"], "admin");
    let admin = r.json["admin_key"]["key"].as_str().unwrap().to_string();

    // The tenant's admin reads and changes it.
    let got = t.get("/v1/tenants/acme", &admin).await;
    assert_eq!(got.ok()["providers"]["max_cost_per_message"], 0.05);
    let patched = t
        .call(
            "PATCH",
            "/v1/tenants/acme",
            Some(&admin),
            Some(
                json!({"name": "Acme Corp", "domains": ["verify.acme.com", "sms.acme.com", "sms.acme.com"],
                        "fraud_thresholds": {"review": 0.3, "block": 0.7}}),
            ),
            &[],
        )
        .await;
    assert_eq!(patched.ok()["name"], "Acme Corp");
    assert_eq!(
        patched.json["domains"],
        json!(["sms.acme.com", "verify.acme.com"])
    );
    assert_eq!(
        patched.json["branding"]["company_name"], "Acme",
        "untouched fields stay"
    );
    let again = t.get("/v1/tenants/acme", &admin).await;
    assert_eq!(again.ok()["fraud_thresholds"]["review"], 0.3);
    // null returns to the model's thresholds; an absent field leaves them.
    let r = t
        .call(
            "PATCH",
            "/v1/tenants/acme",
            Some(&admin),
            Some(json!({"name": "Acme Corp"})),
            &[],
        )
        .await;
    assert_eq!(r.ok()["fraud_thresholds"]["review"], 0.3);
    let r = t
        .call(
            "PATCH",
            "/v1/tenants/acme",
            Some(&admin),
            Some(json!({"fraud_thresholds": null})),
            &[],
        )
        .await;
    assert_eq!(r.ok()["fraud_thresholds"], serde_json::Value::Null);
    assert_eq!(
        again.json["domains"],
        json!(["sms.acme.com", "verify.acme.com"])
    );

    // Defaults when only id and name are given.
    let r = t
        .call(
            "POST",
            "/v1/tenants",
            Some(OPERATOR),
            Some(json!({"id": "bare", "name": "Bare"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["tenant"]["region"], "global");
    assert_eq!(
        r.json["tenant"]["fraud_thresholds"],
        serde_json::Value::Null,
        "unset: the model's suggested thresholds apply"
    );

    let list = t.get("/v1/tenants", OPERATOR).await;
    let ids: Vec<_> = list.ok()["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("acme"), json!("bare")]);

    // Creating twice conflicts; deleting removes the tenant and its keys.
    let dup = t
        .call(
            "POST",
            "/v1/tenants",
            Some(OPERATOR),
            Some(json!({"id": "acme", "name": "Other"})),
            &[],
        )
        .await;
    assert_eq!(dup.problem(409), "conflict");
    assert_eq!(
        t.call("DELETE", "/v1/tenants/acme", Some(OPERATOR), None, &[])
            .await
            .status,
        204
    );
    t.get("/v1/tenants/acme", OPERATOR).await.problem(404);
    assert_eq!(
        t.get("/v1/tenants", &admin).await.problem(401),
        "unauthorized"
    );
    t.call("DELETE", "/v1/tenants/acme", Some(OPERATOR), None, &[])
        .await
        .problem(404);
}

async fn tenant_validation_errors(db: Db) {
    let t = TestApi::new(db).await;
    for (body, needle) in [
        (json!({"id": "Acme", "name": "x"}), "id"),
        (json!({"id": "acme", "name": " padded"}), "name"),
        (
            json!({"id": "acme", "name": "A", "domains": ["localhost"]}),
            "domain",
        ),
        (
            json!({"id": "acme", "name": "A", "branding": {"primary_color": "red"}}),
            "primary_color",
        ),
        (
            json!({"id": "acme", "name": "A", "branding": {"logo_url": "javascript:alert(1)"}}),
            "logo_url",
        ),
        (
            json!({"id": "acme", "name": "A", "branding": {"custom_css": "</style><script>"}}),
            "custom_css",
        ),
        (
            json!({"id": "acme", "name": "A", "fraud_thresholds": {"review": 1.5, "block": 0.9}}),
            "review",
        ),
        (
            json!({"id": "acme", "name": "A", "providers": {"allow": ["bad name!"]}}),
            "provider",
        ),
    ] {
        let r = t
            .call(
                "POST",
                "/v1/tenants",
                Some(OPERATOR),
                Some(body.clone()),
                &[],
            )
            .await;
        assert_eq!(r.problem(422), "invalid_request", "{body}");
        assert!(
            r.json["detail"].as_str().unwrap().contains(needle),
            "{body}: {}",
            r.text
        );
    }
    // Unknown fields and wrong types are refused by the body parser, naming the field.
    let r = t
        .call(
            "POST",
            "/v1/tenants",
            Some(OPERATOR),
            Some(json!({"id": "acme", "name": "A", "colour": 1})),
            &[],
        )
        .await;
    assert_eq!(r.problem(422), "invalid_body");
    assert!(
        r.json["detail"].as_str().unwrap().contains("colour"),
        "{}",
        r.text
    );
    let r = t
        .call(
            "POST",
            "/v1/tenants",
            Some(OPERATOR),
            Some(json!({"id": 7, "name": "A"})),
            &[],
        )
        .await;
    assert_eq!(r.problem(422), "invalid_body");
    assert_eq!(
        t.get("/v1/tenants", OPERATOR).await.ok()["tenants"],
        json!([]),
        "nothing was created"
    );
}

async fn domains_are_unique_across_tenants(db: Db) {
    let t = TestApi::new(db).await;
    t.tenant("acme", &["verify.acme.com"]).await;
    let r = t
        .call(
            "POST",
            "/v1/tenants",
            Some(OPERATOR),
            Some(json!({"id": "evil", "name": "Evil", "domains": ["verify.acme.com"]})),
            &[],
        )
        .await;
    assert_eq!(r.problem(409), "conflict");
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap()
            .contains("verify.acme.com")
    );
    // The failed create left nothing behind.
    t.get("/v1/tenants/evil", OPERATOR).await.problem(404);
    let evil = t.tenant("evil", &[]).await;
    let r = t
        .call(
            "PATCH",
            "/v1/tenants/evil",
            Some(&evil),
            Some(json!({"domains": ["verify.acme.com"]})),
            &[],
        )
        .await;
    assert_eq!(r.problem(409), "conflict");
}

async fn credentials_are_checked(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    assert_eq!(
        t.call("GET", "/v1/auth/whoami", None, None, &[])
            .await
            .problem(401),
        "unauthorized"
    );
    t.get("/v1/auth/whoami", "vf_0123456789ab_nope")
        .await
        .problem(401);
    t.get("/v1/auth/whoami", "not-a-key").await.problem(401);
    // A real key id with a wrong secret.
    let id = &admin[3..15];
    t.get("/v1/auth/whoami", &format!("vf_{id}_wrongsecret"))
        .await
        .problem(401);
    // Bearer works like x-api-key; other schemes are refused.
    let r = t
        .call(
            "GET",
            "/v1/auth/whoami",
            None,
            None,
            &[("authorization", &format!("Bearer {admin}"))],
        )
        .await;
    assert_eq!(r.ok()["tenant"], "acme");
    assert_eq!(r.json["role"], "admin");
    t.call(
        "GET",
        "/v1/auth/whoami",
        None,
        None,
        &[("authorization", "Basic Zm9vOmJhcg==")],
    )
    .await
    .problem(401);
    // The operator has no tenant unless it names one.
    let r = t.get("/v1/auth/whoami", OPERATOR).await;
    assert_eq!(r.ok()["principal"], "operator");
    assert_eq!(r.json["tenant"], json!(null));
    let r = t.get("/v1/auth/keys", OPERATOR).await;
    assert_eq!(r.problem(400), "bad_request");
    let r = t
        .call(
            "GET",
            "/v1/auth/keys",
            Some(OPERATOR),
            None,
            &[("veriflow-tenant", "acme")],
        )
        .await;
    assert_eq!(r.ok()["keys"].as_array().unwrap().len(), 1);
    t.call(
        "GET",
        "/v1/auth/keys",
        Some(OPERATOR),
        None,
        &[("veriflow-tenant", "nope")],
    )
    .await
    .problem(404);
    // Tenant keys cannot manage tenants.
    t.call(
        "POST",
        "/v1/tenants",
        Some(&admin),
        Some(json!({"id": "x1", "name": "X"})),
        &[],
    )
    .await
    .problem(403);
}

async fn host_domain_resolves_the_tenant(db: Db) {
    let t = TestApi::new(db).await;
    let acme = t.tenant("acme", &["verify.acme.com"]).await;
    let globex = t.tenant("globex", &["sms.globex.io"]).await;
    let whoami = |key: String, host: &'static str| {
        let t = &t;
        async move {
            t.call(
                "GET",
                "/v1/auth/whoami",
                Some(&key),
                None,
                &[("host", host)],
            )
            .await
        }
    };
    assert_eq!(
        whoami(acme.clone(), "Verify.Acme.com:443").await.ok()["tenant"],
        "acme"
    );
    // Another tenant's key on this tenant's domain is refused.
    assert_eq!(
        whoami(globex.clone(), "verify.acme.com").await.problem(403),
        "tenant_mismatch"
    );
    // A host that is no tenant's domain falls back to the key.
    assert_eq!(
        whoami(globex.clone(), "api.veriflow.example").await.ok()["tenant"],
        "globex"
    );
    // The operator is scoped by the domain.
    assert_eq!(
        whoami(OPERATOR.to_string(), "sms.globex.io").await.ok()["tenant"],
        "globex"
    );
    let r = t
        .call(
            "GET",
            "/v1/templates",
            Some(OPERATOR),
            None,
            &[("host", "sms.globex.io")],
        )
        .await;
    assert!(r.ok()["services"].is_array());
}

async fn keys_are_shown_once_and_stored_hashed(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    let (id, dev) = t.key(&admin, "developer").await;
    let list = t.get("/v1/auth/keys", &admin).await;
    let keys = list.ok()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert!(!list.text.contains(&dev[16..]), "secrets are never listed");
    assert!(keys.iter().all(|k| k.get("key").is_none()));
    let stored = t.api.store().key(&id).await.unwrap().unwrap();
    assert_eq!(stored.secret_hash.len(), 64);
    assert!(!stored.secret_hash.contains(&dev[16..]));
    assert_eq!(
        t.get("/v1/auth/whoami", &dev).await.ok()["role"],
        "developer"
    );
    // Revocation takes effect at once and is idempotent.
    let r = t
        .call(
            "DELETE",
            &format!("/v1/auth/keys/{id}"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert!(r.ok()["revoked_at"].is_string());
    let r = t.get("/v1/auth/whoami", &dev).await;
    assert_eq!(r.problem(401), "unauthorized");
    assert!(r.json["detail"].as_str().unwrap().contains("revoked"));
    t.call(
        "DELETE",
        &format!("/v1/auth/keys/{id}"),
        Some(&admin),
        None,
        &[],
    )
    .await
    .ok();
    t.call(
        "DELETE",
        "/v1/auth/keys/000000000000",
        Some(&admin),
        None,
        &[],
    )
    .await
    .problem(404);
    // Roles outside the four are refused.
    let r = t
        .call(
            "POST",
            "/v1/auth/keys",
            Some(&admin),
            Some(json!({"name": "x", "role": "root"})),
            &[],
        )
        .await;
    assert_eq!(r.problem(422), "invalid_body");
}

async fn cross_tenant_access_is_refused_on_every_route(db: Db) {
    let t = TestApi::new(db).await;
    let acme = t.tenant("acme", &["verify.acme.com"]).await;
    let globex = t.tenant("globex", &[]).await;
    let (acme_dev_id, acme_dev) = t.key(&acme, "developer").await;
    let put = json!({"source": "login = ACME { $code }"});
    t.call("PUT", "/v1/templates/login/en", Some(&acme), Some(put), &[])
        .await
        .ok();

    // Globex's admin aims at Acme's resources by id: each answers as if absent.
    t.get("/v1/tenants/acme", &globex).await.problem(404);
    t.call(
        "PATCH",
        "/v1/tenants/acme",
        Some(&globex),
        Some(json!({"name": "Pwned"})),
        &[],
    )
    .await
    .problem(404);
    t.call("DELETE", "/v1/tenants/acme", Some(&globex), None, &[])
        .await
        .problem(403);
    t.call(
        "DELETE",
        &format!("/v1/auth/keys/{acme_dev_id}"),
        Some(&globex),
        None,
        &[],
    )
    .await
    .problem(404);
    // Lists show only the caller's own tenant.
    let tenants = t.get("/v1/tenants", &globex).await;
    assert_eq!(tenants.ok()["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(tenants.json["tenants"][0]["id"], "globex");
    let keys = t.get("/v1/auth/keys", &globex).await;
    assert!(!keys.ok().to_string().contains(&acme_dev_id));
    // Acme's override is invisible to and has no effect on Globex.
    let tpl = t.get("/v1/templates/login/en", &globex).await;
    assert_eq!(tpl.ok()["origin"], "shipped");
    let list = t.get("/v1/templates", &globex).await;
    assert!(
        list.ok()["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["overridden"] == json!([]))
    );
    let render =
        json!({"service": "login", "locale": "en", "variables": {"code": "1", "minutes": 5}});
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&globex),
            Some(render.clone()),
            &[],
        )
        .await;
    assert!(!r.ok()["text"].as_str().unwrap().contains("ACME"));
    assert_eq!(r.json["branding"]["company_name"], "globex Co");
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&acme_dev),
            Some(render),
            &[],
        )
        .await;
    assert_eq!(r.ok()["text"], "ACME 1");
    t.call("DELETE", "/v1/templates/login/en", Some(&globex), None, &[])
        .await
        .problem(404);
    assert_eq!(
        t.get("/v1/templates/login/en", &acme).await.ok()["origin"],
        "tenant"
    );
    // Usage is per tenant.
    assert_eq!(t.get("/v1/usage", &globex).await.ok()["tenant"], "globex");
    // Acme's webhook endpoint does not exist for Globex, whatever the route.
    let created = t
        .call(
            "POST",
            "/v1/webhooks/endpoints",
            Some(&acme),
            Some(json!({"url": "https://hooks.acme.com/in"})),
            &[],
        )
        .await;
    let ep = created.ok()["id"].as_str().unwrap().to_string();
    let published = t
        .call(
            "POST",
            "/v1/webhooks/messages",
            Some(&acme),
            Some(json!({"event_type": "webhook.test", "payload": {"secret": "acme's"}})),
            &[],
        )
        .await;
    let acme_message = published.ok()["id"].as_str().unwrap().to_string();
    assert_eq!(published.json["queued"], 1, "{}", published.text);
    let theirs = t.get("/v1/webhooks/messages", &globex).await;
    assert_eq!(
        theirs.ok()["messages"],
        json!([]),
        "Globex lists none of Acme's"
    );
    for (method, path, body) in [
        ("GET", format!("/v1/webhooks/endpoints/{ep}"), None),
        (
            "PATCH",
            format!("/v1/webhooks/endpoints/{ep}"),
            Some(json!({"url": "https://evil.example.com/"})),
        ),
        ("DELETE", format!("/v1/webhooks/endpoints/{ep}"), None),
        ("GET", format!("/v1/webhooks/endpoints/{ep}/secret"), None),
        (
            "POST",
            format!("/v1/webhooks/endpoints/{ep}/secret/rotate"),
            Some(json!({})),
        ),
        ("POST", format!("/v1/webhooks/endpoints/{ep}/test"), None),
        ("GET", format!("/v1/webhooks/endpoints/{ep}/attempts"), None),
        (
            "POST",
            format!("/v1/webhooks/endpoints/{ep}/replay"),
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
        ),
        ("GET", format!("/v1/webhooks/messages/{acme_message}"), None),
    ] {
        t.call(method, &path, Some(&globex), body, &[])
            .await
            .problem(404);
    }
    let hooks = t.get("/v1/webhooks/endpoints", &globex).await;
    assert_eq!(hooks.ok()["endpoints"], json!([]));
    assert_eq!(
        t.get(&format!("/v1/webhooks/endpoints/{ep}"), &acme)
            .await
            .ok()["url"],
        "https://hooks.acme.com/in"
    );
    // And Acme's domain does not serve Globex's key on any route.
    for (method, path) in [
        ("GET", "/v1/tenants"),
        ("GET", "/v1/auth/keys"),
        ("GET", "/v1/templates"),
        ("GET", "/v1/usage"),
        ("GET", "/v1/auth/whoami"),
    ] {
        let r = t
            .call(
                method,
                path,
                Some(&globex),
                None,
                &[("host", "verify.acme.com")],
            )
            .await;
        assert_eq!(r.problem(403), "tenant_mismatch", "{method} {path}");
    }
    // Nothing of Acme's changed.
    let acme_now = t.get("/v1/tenants/acme", &acme).await;
    assert_eq!(acme_now.ok()["name"], "acme Inc");
    assert_eq!(
        t.get("/v1/auth/whoami", &acme_dev).await.ok()["role"],
        "developer"
    );
}

async fn roles_are_checked_per_route(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    let mut keys = vec![("admin", admin.clone())];
    for role in ["analyst", "developer", "viewer"] {
        keys.push((role, t.key(&admin, role).await.1));
    }
    let render = json!({"service": "verify", "variables": {"code": "1", "minutes": 1}});
    let cases: Vec<(&str, &str, Option<serde_json::Value>, &[&str])> = vec![
        (
            "GET",
            "/v1/tenants/acme",
            None,
            &["admin", "analyst", "developer", "viewer"],
        ),
        (
            "GET",
            "/v1/tenants",
            None,
            &["admin", "analyst", "developer", "viewer"],
        ),
        (
            "PATCH",
            "/v1/tenants/acme",
            Some(json!({"feature_flags": {"x": true}})),
            &["admin"],
        ),
        ("GET", "/v1/auth/keys", None, &["admin"]),
        (
            "POST",
            "/v1/auth/keys",
            Some(json!({"name": "n", "role": "viewer"})),
            &["admin"],
        ),
        (
            "GET",
            "/v1/templates",
            None,
            &["admin", "analyst", "developer", "viewer"],
        ),
        (
            "GET",
            "/v1/templates/login/en",
            None,
            &["admin", "analyst", "developer", "viewer"],
        ),
        (
            "PUT",
            "/v1/templates/login/fr",
            Some(json!({"source": "login = { $code }"})),
            &["admin", "developer"],
        ),
        (
            "POST",
            "/v1/templates/render",
            Some(render),
            &["admin", "developer"],
        ),
        (
            "GET",
            "/v1/usage",
            None,
            &["admin", "analyst", "developer", "viewer"],
        ),
        (
            "GET",
            "/v1/auth/whoami",
            None,
            &["admin", "analyst", "developer", "viewer"],
        ),
        (
            "GET",
            "/v1/webhooks/endpoints",
            None,
            &["admin", "analyst", "developer", "viewer"],
        ),
        (
            "POST",
            "/v1/webhooks/endpoints",
            Some(json!({"url": "https://hooks.example.com/veriflow"})),
            &["admin", "developer"],
        ),
        (
            "POST",
            "/v1/webhooks/messages",
            Some(json!({"event_type": "app.order.shipped", "payload": {"order": 1}})),
            &["admin", "developer"],
        ),
        (
            "GET",
            "/v1/webhooks/messages",
            None,
            &["admin", "analyst", "developer", "viewer"],
        ),
        (
            "GET",
            "/v1/webhooks/event-types",
            None,
            &["admin", "analyst", "developer", "viewer"],
        ),
    ];
    for (method, path, body, allowed) in cases {
        for (role, key) in &keys {
            let r = t.call(method, path, Some(key), body.clone(), &[]).await;
            if allowed.contains(role) {
                assert!(
                    r.status.is_success(),
                    "{role} {method} {path}: {} {}",
                    r.status,
                    r.text
                );
            } else {
                assert_eq!(r.problem(403), "forbidden", "{role} {method} {path}");
            }
        }
    }
    // Operator-only routes refuse every tenant role.
    for (role, key) in &keys {
        let r = t
            .call("DELETE", "/v1/tenants/acme", Some(key), None, &[])
            .await;
        assert_eq!(r.problem(403), "forbidden", "{role}");
    }
}

async fn malformed_requests_get_problem_bodies(db: Db) {
    let t = TestApi::with(db, |c| c.max_body_bytes = 1024).await;
    let admin = t.tenant("acme", &[]).await;
    let raw = |method: &str, path: &str, ctype: Option<&str>, body: Vec<u8>| {
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("x-api-key", admin.clone());
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        req.body(axum::body::Body::from(body)).unwrap()
    };
    let json = Some("application/json");
    let big = format!(
        "{{\"name\": \"{}\", \"role\": \"admin\"}}",
        "x".repeat(4096)
    );
    let cases: Vec<(Option<&str>, Vec<u8>, u16, &str)> = vec![
        (json, b"{\"name\": ".to_vec(), 400, "malformed_json"),
        (json, b"[1,2]".to_vec(), 422, "invalid_body"),
        (
            json,
            b"{\"name\": 5, \"role\": \"admin\"}".to_vec(),
            422,
            "invalid_body",
        ),
        (
            Some("text/plain"),
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (None, b"{}".to_vec(), 415, "unsupported_media_type"),
        (json, big.into_bytes(), 413, "body_too_large"),
        (json, vec![0xff, 0xfe, 0x00], 400, "malformed_json"),
    ];
    for (ctype, body, status, code) in cases {
        let r = t.send(raw("POST", "/v1/auth/keys", ctype, body)).await;
        assert_eq!(r.problem(status), code, "{ctype:?} {status}");
    }
    assert_eq!(
        t.get("/v1/nope", &admin).await.problem(404),
        "unknown_route"
    );
    assert_eq!(
        t.call("GET", "/", None, None, &[]).await.problem(404),
        "unknown_route"
    );
    let r = t.call("PUT", "/v1/tenants", Some(&admin), None, &[]).await;
    assert_eq!(r.problem(405), "method_not_allowed");
    let r = t.get("/v1/templates/login/e", &admin).await;
    assert_eq!(r.problem(422), "invalid_request");
    let r = t.get("/v1/templates/bad%FFname/en", &admin).await;
    assert!(r.status.is_client_error(), "{}", r.text);
    r.problem(r.status.as_u16());
    // Every response carries a request id; a sane incoming one is echoed.
    let r = t
        .call(
            "GET",
            "/healthz",
            None,
            None,
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(r.headers["x-request-id"], "abc-123");
    let r = t.call("GET", "/healthz", None, None, &[]).await;
    assert_eq!(r.headers["x-request-id"].len(), 16);
}

async fn rate_limit_answers_429_with_retry_after(db: Db) {
    let t = TestApi::with(db, |c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 3;
    })
    .await;
    let admin = t.tenant("acme", &[]).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(t.get("/v1/auth/whoami", &admin).await);
    }
    let limited: Vec<_> = statuses.iter().filter(|r| r.status == 429).collect();
    assert!(
        limited.len() >= 2,
        "{:?}",
        statuses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let r = limited[0];
    assert_eq!(r.problem(429), "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(r.json["retry_after"], retry);
    // Another credential has its own bucket.
    let r = t.get("/v1/auth/whoami", OPERATOR).await;
    assert!(r.status.is_success());
}

async fn usage_counts_requests_per_tenant(db: Db) {
    let t = TestApi::new(db).await;
    let acme = t.tenant("acme", &[]).await;
    let globex = t.tenant("globex", &[]).await;
    for _ in 0..5 {
        t.get("/v1/auth/whoami", &acme).await.ok();
    }
    t.api.flush_usage().await.unwrap();
    for _ in 0..2 {
        t.get("/v1/auth/whoami", &acme).await.ok();
    }
    t.get("/v1/auth/whoami", &globex).await.ok();
    // Stored and pending counts add up; the reading request counts itself.
    let r = t.get("/v1/usage", &acme).await;
    assert_eq!(r.ok()["requests"], 8, "{}", r.text);
    assert_eq!(r.json["verifications_scored"], 0);
    assert_eq!(r.json["webhooks_sent"], 0);
    t.api.flush_usage().await.unwrap();
    assert_eq!(t.get("/v1/usage", &globex).await.ok()["requests"], 2);
    assert_eq!(t.get("/v1/usage", &acme).await.ok()["requests"], 9);
}

async fn openapi_lists_every_served_route(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    let doc = t.call("GET", "/openapi.json", None, None, &[]).await;
    let paths = doc.ok()["paths"].as_object().unwrap().clone();
    let mut documented = Vec::new();
    for (path, item) in &paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();
    let expected = [
        "DELETE /v1/auth/keys/{id}",
        "DELETE /v1/templates/{service}/{locale}",
        "DELETE /v1/tenants/{id}",
        "DELETE /v1/webhooks/endpoints/{id}",
        "GET /healthz",
        "GET /metrics",
        "GET /openapi.json",
        "GET /readyz",
        "GET /v1/auth/keys",
        "GET /v1/auth/whoami",
        "GET /v1/templates",
        "GET /v1/templates/{service}/{locale}",
        "GET /v1/tenants",
        "GET /v1/tenants/{id}",
        "GET /v1/usage",
        "GET /v1/webhooks/endpoints",
        "GET /v1/webhooks/endpoints/{id}",
        "GET /v1/webhooks/endpoints/{id}/attempts",
        "GET /v1/webhooks/endpoints/{id}/secret",
        "GET /v1/webhooks/event-types",
        "GET /v1/webhooks/messages",
        "GET /v1/webhooks/messages/{id}",
        "PATCH /v1/tenants/{id}",
        "PATCH /v1/webhooks/endpoints/{id}",
        "POST /v1/auth/keys",
        "POST /v1/route",
        "POST /v1/score",
        "POST /v1/sql",
        "POST /v1/templates/render",
        "POST /v1/tenants",
        "POST /v1/webhooks/endpoints",
        "POST /v1/webhooks/endpoints/{id}/replay",
        "POST /v1/webhooks/endpoints/{id}/secret/rotate",
        "POST /v1/webhooks/endpoints/{id}/test",
        "POST /v1/webhooks/messages",
        "PUT /v1/templates/{service}/{locale}",
    ];
    assert_eq!(documented, expected);
    // Every documented operation is served (never "unknown route" or 405), and on
    // every documented path the undocumented methods are 405: the router serves
    // exactly what the document lists.
    for (path, item) in &paths {
        let concrete = path
            .replace("{id}", "acme")
            .replace("{service}", "login")
            .replace("{locale}", "en");
        for method in ["get", "post", "put", "patch", "delete"] {
            let r = t
                .call(&method.to_uppercase(), &concrete, Some(&admin), None, &[])
                .await;
            let code = r.json["code"].as_str().unwrap_or("");
            if item.get(method).is_some() {
                assert!(
                    code != "unknown_route" && code != "method_not_allowed",
                    "{method} {path}: {}",
                    r.text
                );
            } else {
                assert_eq!(
                    r.status, 405,
                    "{method} {path} is served but not documented"
                );
            }
        }
    }
    // Every operation but the public ones declares the API-key security schemes.
    for (path, item) in &paths {
        for (_, op) in item.as_object().unwrap() {
            let secured = op.get("security").is_some();
            assert_eq!(
                secured,
                path.starts_with("/v1/") || path == "/metrics",
                "{path}"
            );
        }
    }
}

fn render_body(service: &str, locale: &str, minutes: i64) -> serde_json::Value {
    json!({"service": service, "locale": locale,
           "variables": {"code": "042917", "app_name": "Acme", "minutes": minutes}})
}

async fn templates_render_in_every_locale(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    let cases = [
        (
            "en",
            "Acme: your verification code is 042917. It expires in 10 minutes.",
            "ltr",
        ),
        (
            "es",
            "Acme: tu código de verificación es 042917. Caduca en 10 minutos.",
            "ltr",
        ),
        (
            "fr",
            "Acme : votre code de vérification est 042917. Il expire dans 10 minutes.",
            "ltr",
        ),
        (
            "pt",
            "Acme: seu código de verificação é 042917. Ele expira em 10 minutos.",
            "ltr",
        ),
        (
            "ar",
            // Numbers in Arabic-Indic digits (CLDR's default for `ar`); the
            // code is text and stays as sent.
            "رمز التحقق الخاص بك في Acme هو 042917. تنتهي صلاحيته خلال ١٠ دقائق.",
            "rtl",
        ),
    ];
    for (locale, text, direction) in cases {
        let r = t
            .call(
                "POST",
                "/v1/templates/render",
                Some(&admin),
                Some(render_body("verify", locale, 10)),
                &[],
            )
            .await;
        assert_eq!(r.ok()["text"], text, "{locale}");
        assert_eq!(r.json["locale"], locale);
        assert_eq!(r.json["direction"], direction);
        assert_eq!(r.json["origin"], "shipped");
    }
    // Every shipped service renders in every locale without leftover placeables.
    let list = t.get("/v1/templates", &admin).await;
    for s in list.ok()["services"].as_array().unwrap() {
        for locale in s["shipped"].as_array().unwrap() {
            let service = s["service"].as_str().unwrap();
            let r = t
                .call(
                    "POST",
                    "/v1/templates/render",
                    Some(&admin),
                    Some(render_body(service, locale.as_str().unwrap(), 1)),
                    &[],
                )
                .await;
            let text = r.ok()["text"].as_str().unwrap();
            assert!(
                text.contains("042917") && !text.contains('{'),
                "{service} {locale}: {text}"
            );
        }
    }
}

async fn arabic_plural_forms(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    // CLDR Arabic: zero, one, two, few (n % 100 = 3..10), many (n % 100 =
    // 11..99), other (100, 101, 102, …); numbers in Arabic-Indic digits.
    for (minutes, phrase) in [
        (0, "أقل من دقيقة"),
        (1, "دقيقة واحدة"),
        (2, "دقيقتين"),
        (3, "٣ دقائق"),
        (10, "١٠ دقائق"),
        (11, "١١ دقيقة"),
        (99, "٩٩ دقيقة"),
        (100, "١٠٠ دقيقة"),
        (103, "١٠٣ دقائق"),
        (111, "١١١ دقيقة"),
        (1003, "١٬٠٠٣ دقائق"),
    ] {
        let r = t
            .call(
                "POST",
                "/v1/templates/render",
                Some(&admin),
                Some(render_body("login", "ar", minutes)),
                &[],
            )
            .await;
        let text = r.ok()["text"].as_str().unwrap();
        assert!(
            text.contains(&format!("لمدة {phrase}.")),
            "{minutes}: {text}"
        );
        assert_eq!(r.json["direction"], "rtl");
        assert_eq!(r.json["encoding"], "UCS-2");
    }
    // English and French disagree on zero: en "0 minutes", fr "0 minute".
    let en = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(render_body("verify", "en", 0)),
            &[],
        )
        .await;
    assert!(en.ok()["text"].as_str().unwrap().ends_with("0 minutes."));
    let fr = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(render_body("verify", "fr", 0)),
            &[],
        )
        .await;
    assert!(fr.ok()["text"].as_str().unwrap().ends_with("0 minute."));
}

async fn locale_negotiation_and_fallback(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    let render = |locale: Option<&'static str>, accept: Option<&'static str>| {
        let t = &t;
        let admin = admin.clone();
        async move {
            let mut body = json!({"service": "signup", "variables": {"code": "1", "minutes": 5}});
            if let Some(l) = locale {
                body["locale"] = json!(l);
            }
            let headers: Vec<(&str, &str)> = accept
                .map(|a| vec![("accept-language", a)])
                .unwrap_or_default();
            let r = t
                .call(
                    "POST",
                    "/v1/templates/render",
                    Some(&admin),
                    Some(body),
                    &headers,
                )
                .await;
            r.ok()["locale"].as_str().unwrap().to_string()
        }
    };
    assert_eq!(render(Some("pt-BR"), None).await, "pt");
    assert_eq!(render(Some("es-MX"), None).await, "es");
    assert_eq!(render(Some("de-DE"), None).await, "en");
    assert_eq!(render(None, Some("fr-CA,fr;q=0.9,en;q=0.5")).await, "fr");
    assert_eq!(render(None, Some("de;q=1.0, ar;q=0.8")).await, "ar");
    assert_eq!(render(None, Some("*")).await, "en");
    assert_eq!(render(None, Some("!!garbage!!")).await, "en");
    assert_eq!(render(None, None).await, "en");
    // The body's locale wins over the header.
    assert_eq!(render(Some("es"), Some("fr")).await, "es");
    // A service only the tenant defines, in English only: French falls back to it.
    t.call(
        "PUT",
        "/v1/templates/delivery/en",
        Some(&admin),
        Some(json!({"source": "delivery = Your parcel code: { $code }"})),
        &[],
    )
    .await
    .ok();
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(json!({"service": "delivery", "locale": "fr", "variables": {"code": "77"}})),
            &[],
        )
        .await;
    assert_eq!(r.ok()["text"], "Your parcel code: 77");
    assert_eq!(r.json["locale"], "en");
    assert_eq!(r.json["origin"], "tenant");
    // An unknown service is a 404 naming what exists, never a raw key.
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(json!({"service": "nope", "variables": {"code": "1"}})),
            &[],
        )
        .await;
    assert_eq!(r.problem(404), "not_found");
    assert!(r.json["detail"].as_str().unwrap().contains("login"));
    // `minutes` defaults to the contract's TTL; `code` is required.
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(json!({"service": "verify", "variables": {"code": "1"}})),
            &[],
        )
        .await;
    assert!(r.ok()["text"].as_str().unwrap().ends_with("10 minutes."));
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(json!({"service": "verify", "variables": {"minutes": 3}})),
            &[],
        )
        .await;
    assert_eq!(r.problem(422), "invalid_body");
    assert!(
        r.json["detail"].as_str().unwrap().contains("code"),
        "{}",
        r.text
    );
    // Variables an override needs beyond those are named when missing.
    t.call(
        "PUT",
        "/v1/templates/verify/es",
        Some(&admin),
        Some(json!({"source": "verify = Hola { $first_name }, tu código: { $code }"})),
        &[],
    )
    .await
    .ok();
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(json!({"service": "verify", "locale": "es", "variables": {"code": "1"}})),
            &[],
        )
        .await;
    assert_eq!(r.problem(422), "invalid_request");
    assert_eq!(r.json["errors"], json!(["first_name"]));
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(json!({"service": "verify", "locale": "es",
                          "variables": {"code": "1", "first_name": "Ana"}})),
            &[],
        )
        .await;
    assert_eq!(r.ok()["text"], "Hola Ana, tu código: 1");
}

async fn tenant_overrides(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    let source = "login = { $app_name }: votre code est { $code } ({ $minutes ->\n    [one] une minute\n   *[other] { $minutes } minutes\n})";
    let r = t
        .call(
            "PUT",
            "/v1/templates/login/fr",
            Some(&admin),
            Some(json!({"source": source})),
            &[],
        )
        .await;
    assert_eq!(r.ok()["origin"], "tenant");
    let got = t.get("/v1/templates/login/fr", &admin).await;
    assert_eq!(got.ok()["source"], source);
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(render_body("login", "fr-FR", 1)),
            &[],
        )
        .await;
    assert_eq!(r.ok()["text"], "Acme: votre code est 042917 (une minute)");
    assert_eq!(r.json["origin"], "tenant");
    // Other locales and services keep the shipped text.
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(render_body("login", "es", 1)),
            &[],
        )
        .await;
    assert_eq!(r.ok()["origin"], "shipped");
    // An override in a locale veriflow does not ship is negotiated too.
    t.call(
        "PUT",
        "/v1/templates/login/de",
        Some(&admin),
        Some(json!({"source": "login = Ihr Code: { $code }"})),
        &[],
    )
    .await
    .ok();
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(render_body("login", "de-AT", 1)),
            &[("accept-language", "fr")],
        )
        .await;
    assert_eq!(r.ok()["text"], "Ihr Code: 042917");
    assert_eq!(r.json["locale"], "de");
    let list = t.get("/v1/templates", &admin).await;
    let login = list.ok()["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "login")
        .unwrap()
        .clone();
    assert_eq!(login["overridden"], json!(["de", "fr"]));
    // Deleting restores the shipped text.
    assert_eq!(
        t.call("DELETE", "/v1/templates/login/fr", Some(&admin), None, &[])
            .await
            .status,
        204
    );
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(render_body("login", "fr", 1)),
            &[],
        )
        .await;
    assert_eq!(r.ok()["origin"], "shipped");
    assert_eq!(
        t.get("/v1/templates/login/fr", &admin).await.ok()["origin"],
        "shipped"
    );
}

async fn invalid_overrides_are_refused(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    for (source, needle) in [
        ("login = { $code", "line 1"),
        ("other = hi", "does not define the message `login`"),
        ("login = hi\nextra = more", "defines message `extra`"),
        ("login = { -missing-term }", "Unknown term"),
        ("login =\n    .attr = only attributes", "no value"),
    ] {
        let r = t
            .call(
                "PUT",
                "/v1/templates/login/en",
                Some(&admin),
                Some(json!({"source": source})),
                &[],
            )
            .await;
        assert_eq!(r.problem(422), "invalid_request", "{source}");
        assert!(
            r.json["detail"].as_str().unwrap().contains(needle),
            "{source}: {}",
            r.text
        );
    }
    let r = t
        .call(
            "PUT",
            "/v1/templates/login/en",
            Some(&admin),
            Some(json!({"source": "x".repeat(5000)})),
            &[],
        )
        .await;
    r.problem(422);
    assert_eq!(
        t.get("/v1/templates/login/en", &admin).await.ok()["origin"],
        "shipped"
    );
}

async fn render_reports_sms_cost_and_branding(db: Db) {
    let t = TestApi::new(db).await;
    let admin = t.tenant("acme", &[]).await;
    t.call(
        "PATCH",
        "/v1/tenants/acme",
        Some(&admin),
        Some(json!({"branding": {
        "company_name": "Acme Pay", "logo_url": "https://cdn.acme.com/l.png",
        "primary_color": "#00AA00", "custom_css": "h1 { color: green }"}})),
        &[],
    )
    .await
    .ok();
    // app_name defaults to the branding's company name.
    let r = t
        .call("POST", "/v1/templates/render", Some(&admin),
              Some(json!({"service": "verify", "locale": "en", "variables": {"code": "123456", "minutes": 10}})), &[])
        .await;
    let text = "Acme Pay: your verification code is 123456. It expires in 10 minutes.";
    assert_eq!(r.ok()["text"], text);
    assert_eq!(r.json["encoding"], "GSM-7");
    assert_eq!(r.json["units"], text.len());
    assert_eq!(r.json["segments"], 1);
    assert_eq!(r.json["units_per_segment"], 160);
    assert_eq!(
        r.json["branding"],
        json!({"company_name": "Acme Pay", "logo_url": "https://cdn.acme.com/l.png",
                                           "primary_color": "#00AA00", "custom_css": "h1 { color: green }"})
    );
    // A long text with a GSM-7 extension character, and one forced into UCS-2.
    let long = format!("login = {}€ {{ $code }}", "a".repeat(155));
    t.call(
        "PUT",
        "/v1/templates/login/en",
        Some(&admin),
        Some(json!({"source": long})),
        &[],
    )
    .await
    .ok();
    let r = t
        .call(
            "POST",
            "/v1/templates/render",
            Some(&admin),
            Some(json!({"service": "login", "locale": "en", "variables": {"code": "123456"}})),
            &[],
        )
        .await;
    assert_eq!(r.ok()["encoding"], "GSM-7");
    assert_eq!(r.json["units"], 155 + 2 + 1 + 6);
    assert_eq!(r.json["segments"], 2);
    assert_eq!(r.json["units_per_segment"], 153);
    let r = t
        .call("POST", "/v1/templates/render", Some(&admin),
              Some(json!({"service": "verify", "locale": "es", "variables": {"code": "123456", "minutes": 10}})), &[])
        .await;
    // "código" has an ó, which GSM-7 lacks.
    assert_eq!(r.ok()["encoding"], "UCS-2");
    let n = r.json["text"].as_str().unwrap().encode_utf16().count();
    assert_eq!(r.json["units"], n);
    assert_eq!(r.json["segments"], if n <= 70 { 1 } else { n.div_ceil(67) });
}

/// utoipa takes `pattern` only as a literal, so each schema pattern is written
/// beside the constant the validation code uses: this keeps the two the same.
#[tokio::test]
async fn schema_patterns_are_the_validation_patterns() {
    use veriflow_api::routes::patterns::*;
    let t = TestApi::new(Db::Sqlite).await;
    let doc = serde_json::to_value(t.api.openapi()).unwrap();
    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("pattern", serde_json::Value::String(p)) => out.push(p.clone()),
                        _ => collect(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    collect(&doc, &mut found);
    let known = [
        TENANT_ID, REGION, DOMAIN, COLOR, URL, NO_ANGLE, PROVIDER, SERVICE, LOCALE, NAME, PHONE,
        COUNTRY,
    ];
    assert!(found.len() >= known.len(), "{found:?}");
    for p in &found {
        assert!(
            known.contains(&p.as_str()),
            "schema pattern {p:?} is no validation pattern"
        );
    }
}
