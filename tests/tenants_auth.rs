//! `auth.mode = "tenant"` against two fake identity providers (an RSA one
//! for acme, a P-256 one for globex): the token's `iss` selects the tenant,
//! that tenant's keys verify it, and the session's tenant is the record's id.
//! Tokens of one tenant never open the other, forged tenant claim or not.

use std::time::Duration;

use common::admin::*;
use common::auth::*;
use common::*;
use serde_json::{json, Value};
use wsplus::settings::{AuthMode, Mode, Settings};
use wsplus::tenants::TenantSpec;

const PATH: &str = "/ws/tenant";
const ACME_ISS: &str = "https://acme.eu.auth0.example/";
const GLOBEX_ISS: &str = "https://sso.globex.example/realms/globex";

struct Idps {
    acme: FakeJwks,
    globex: FakeJwks,
}

impl Idps {
    fn start() -> Self {
        Self {
            acme: FakeJwks::start(FakeJwks::keys(vec![rsa_keys()[0].jwk("acme-1")])),
            globex: FakeJwks::start(FakeJwks::keys(vec![ec_keys()[0].jwk("globex-1")])),
        }
    }

    fn settings(&self) -> Settings {
        let mut s = base_settings();
        let mut l = listener(PATH);
        l.mode = Mode::Message;
        l.auth.mode = AuthMode::Tenant;
        l.auth.secret_env = None;
        s.listeners.push(l);
        let idp = |id: &str, iss: &str, fake: &FakeJwks| {
            let mut t = TenantSpec::new(id);
            t.issuer = Some(iss.into());
            t.jwks_uri = Some(fake.uri());
            t
        };
        s.tenants.registered = vec![
            idp("acme", ACME_ISS, &self.acme),
            idp("globex", GLOBEX_ISS, &self.globex),
        ];
        s
    }
}

/// An acme token (acme's RSA key, acme's issuer) with `changes` to its claims.
fn acme(changes: Value) -> String {
    let base = with(claims("acme"), json!({"iss": ACME_ISS, "tenant_id": null}));
    rsa_keys()[0].token("acme-1", &with(base, changes))
}

/// A globex token (globex's P-256 key, globex's issuer) with `changes`.
fn globex(changes: Value) -> String {
    let base = with(
        claims("globex"),
        json!({"iss": GLOBEX_ISS, "tenant_id": null}),
    );
    ec_keys()[0].token("globex-1", &with(base, changes))
}

/// Connects with `token`: the session's tenant (from an echoed message's
/// `_session`), or the refusal's status and reason.
async fn open(app: &TestApp, token: &str) -> Result<String, (u16, String)> {
    match Ws::try_connect(&app.ws_url(PATH, Some(token))).await {
        Ok(mut ws) => {
            ws.send_text(r#"{"hello": 1}"#).await;
            let echo = ws.recv_json().await;
            ws.close().await;
            Ok(echo["_session"]["tenantId"].as_str().unwrap().to_owned())
        }
        Err(r) => {
            assert!(!r.body.contains(token), "the token is never echoed");
            let body: Value = serde_json::from_str(&r.body).unwrap();
            Err((r.status, body["reason"].as_str().unwrap().to_owned()))
        }
    }
}

fn refused(reason: &str) -> Result<String, (u16, String)> {
    Err((401, reason.to_owned()))
}

#[actix_rt::test]
async fn the_issuer_selects_the_tenant_and_its_keys() {
    let idps = Idps::start();
    let app = TestApp::spawn(idps.settings());

    assert_eq!(open(&app, &acme(json!({}))).await, Ok("acme".into()));
    assert_eq!(open(&app, &globex(json!({}))).await, Ok("globex".into()));
    // A tenant claim that agrees is fine; one that names another tenant is not.
    assert_eq!(
        open(&app, &acme(json!({"tenant_id": "acme"}))).await,
        Ok("acme".into())
    );
    assert_eq!(
        open(&app, &acme(json!({"tenant_id": "globex"}))).await,
        refused("invalid_tenant")
    );
    assert_eq!(
        open(&app, &globex(json!({"tenant_id": 7}))).await,
        refused("invalid_tenant")
    );

    // acme's key with globex's issuer (and a forged globex claim): globex's
    // key set has no such key, whichever kid the token names.
    let forged = with(claims("globex"), json!({"iss": GLOBEX_ISS}));
    for kid in ["acme-1", "globex-1"] {
        let token = rsa_keys()[0].token(kid, &forged);
        assert!(open(&app, &token).await.is_err(), "kid {kid}");
    }
    assert_eq!(
        open(&app, &rsa_keys()[0].token("acme-1", &forged)).await,
        refused("unknown_key")
    );
    assert_eq!(
        open(&app, &rsa_keys()[0].token("globex-1", &forged)).await,
        refused("algorithm_not_allowed")
    );
    // Another RSA key under acme's kid: the signature does not verify.
    assert_eq!(
        open(
            &app,
            &rsa_keys()[1].token("acme-1", &with(forged.clone(), json!({"iss": ACME_ISS})))
        )
        .await,
        refused("invalid_signature")
    );

    // Issuers compare exactly; no issuer, or an unknown one, is invalid_issuer.
    for iss in [
        json!("https://acme.eu.auth0.example"),
        json!(null),
        json!(["x"]),
        json!("https://evil/"),
    ] {
        assert_eq!(
            open(&app, &acme(json!({"iss": iss}))).await,
            refused("invalid_issuer"),
            "{iss}"
        );
    }
    // The usual rules still apply: expiry, HS256 refused.
    assert_eq!(
        open(&app, &acme(json!({"exp": now() - 10}))).await,
        refused("expired")
    );
    let hs = sign(
        &json!({"alg": "HS256", "kid": "acme-1"}),
        &with(claims("acme"), json!({"iss": ACME_ISS})),
        &hmac(SECRET.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    );
    assert_eq!(open(&app, &hs).await, refused("algorithm_not_allowed"));
    assert_eq!(app.rejected("invalid_issuer"), 4);
}

#[actix_rt::test]
async fn identity_providers_follow_the_registry() {
    let idps = Idps::start();
    let mut s = idps.settings();
    s.tenants.registered.truncate(1); // globex comes through the API
    let app = TestApp::spawn(s);
    assert_eq!(
        open(&app, &globex(json!({}))).await,
        refused("invalid_issuer")
    );

    let put = Req::new("PUT", "/admin/v1/tenants/globex/settings")
        .json(&json!({"issuer": GLOBEX_ISS, "jwks_uri": idps.globex.uri()}))
        .send(&app)
        .await;
    put.expect_ok();
    // The new tenant's keys are fetched in the background.
    eventually("globex's keys are used", || async {
        open(&app, &globex(json!({}))).await == Ok("globex".into())
    })
    .await;

    // Disabled: 403 tenant_disabled after a valid token.
    Req::new("PATCH", "/admin/v1/tenants/globex/settings")
        .json(&json!({"enabled": false}))
        .send(&app)
        .await
        .expect_ok();
    assert_eq!(
        open(&app, &globex(json!({}))).await,
        Err((403, "tenant_disabled".into()))
    );
    // Moved to another issuer: the old one selects nobody.
    Req::new("PATCH", "/admin/v1/tenants/globex/settings")
        .json(&json!({"enabled": true, "issuer": "https://new.globex.example/"}))
        .send(&app)
        .await
        .expect_ok();
    assert_eq!(
        open(&app, &globex(json!({}))).await,
        refused("invalid_issuer")
    );
    let moved = globex(json!({"iss": "https://new.globex.example/"}));
    eventually("the new issuer is used", || async {
        open(&app, &moved).await == Ok("globex".into())
    })
    .await;
    // Deleted: unknown issuer again; acme never stopped working.
    delete(&app, "/admin/v1/tenants/globex/settings")
        .await
        .expect_ok();
    assert_eq!(open(&app, &moved).await, refused("invalid_issuer"));
    assert_eq!(open(&app, &acme(json!({}))).await, Ok("acme".into()));
}

#[actix_rt::test]
async fn one_providers_outage_leaves_the_others_working() {
    let idps = Idps::start();
    idps.globex.set(Answer::Status(500));
    let app = TestApp::spawn(idps.settings());
    let (status, _) = http_get(app.admin, "/readyz").await;
    assert_eq!(status, 200, "ready although globex's keys are missing");
    assert_eq!(open(&app, &acme(json!({}))).await, Ok("acme".into()));
    // No keys at all for globex: fail closed.
    assert_eq!(open(&app, &globex(json!({}))).await, refused("unknown_key"));
    idps.globex
        .set(FakeJwks::keys(vec![ec_keys()[0].jwk("globex-1")]));
    // Failed fetches are retried with backoff (and unknown kids ask for a
    // refetch at most once per 10 s): the keys arrive without a restart.
    eventually_within(Duration::from_secs(15), "globex recovers", || async {
        open(&app, &globex(json!({}))).await == Ok("globex".into())
    })
    .await;
}

#[test]
fn tenant_mode_settings_are_validated() {
    let mut s = Settings::default();
    s.listeners[0].auth.mode = AuthMode::Tenant;
    s.listeners[0].auth.issuer = Some("https://x/".into());
    s.listeners[0].tenant.from = wsplus::settings::TenantFrom::Static;
    s.listeners[0].tenant.static_id = Some("a".into());
    let problems = wsplus::settings::validate(&s);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("listeners[0].auth.issuer: not used")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("listeners[0].tenant.from: must be \"claim\"")),
        "{problems:?}"
    );
}
