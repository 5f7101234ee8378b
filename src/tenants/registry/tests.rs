//! Registry unit tests: merging, admission, changes, persistence, kicks.

use serde_json::json;

use super::*;

fn settings(name: &str, policy: TenantPolicy, registered: Vec<TenantSpec>) -> TenantsSettings {
    let dir = std::env::temp_dir().join(format!(
        "wsplus-registry-{name}-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TenantsSettings {
        policy,
        store: TenantStore::Sqlite,
        path: dir.join("tenants.db").to_string_lossy().into_owned(),
        registered,
    }
}

fn limited(id: &str, max: u64) -> TenantSpec {
    let mut s = TenantSpec::new(id);
    s.max_connections = Some(max);
    s
}

fn invalid_field(e: ChangeError) -> &'static str {
    match e {
        ChangeError::Invalid(f) => f.field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[actix_rt::test]
async fn an_api_change_wins_until_deleted_then_the_config_record_applies_again() {
    let s = settings("merge", TenantPolicy::Open, vec![limited("acme", 5)]);
    let reg = TenantRegistry::open(&s, None).unwrap();
    assert_eq!(reg.view().get("acme").unwrap().source, Source::Config);
    assert_eq!(reg.admit("acme").unwrap().max_connections, Some(5));

    let rec = reg
        .patch("acme", json!({"max_connections": 9, "rate_limit_per_s": 2}))
        .await
        .unwrap();
    assert_eq!(rec.source, Source::Api);
    assert_eq!(
        reg.admit("acme").unwrap(),
        Admission {
            max_connections: Some(9),
            rate_limit_per_s: Some(2)
        }
    );
    // The change survives a restart.
    drop(reg);
    let reg = TenantRegistry::open(&s, None).unwrap();
    assert_eq!(reg.admit("acme").unwrap().max_connections, Some(9));

    let back = reg.delete("acme").await.unwrap().unwrap();
    assert_eq!(back.source, Source::Config);
    assert_eq!(reg.admit("acme").unwrap().max_connections, Some(5));
    assert_eq!(
        reg.delete("acme").await.unwrap_err(),
        ChangeError::ConfigOnly("acme".into())
    );
    drop(reg);
    let reg = TenantRegistry::open(&s, None).unwrap();
    assert_eq!(reg.view().get("acme").unwrap().source, Source::Config);
}

#[actix_rt::test]
async fn admission_follows_policy_and_enabled() {
    let mut off = TenantSpec::new("off");
    off.enabled = false;
    let open = TenantRegistry::open(
        &settings("open", TenantPolicy::Open, vec![off.clone()]),
        None,
    )
    .unwrap();
    assert_eq!(open.admit("anyone"), Ok(Admission::default()));
    assert_eq!(open.admit("off"), Err(Refusal::Disabled));

    let reg =
        TenantRegistry::open(&settings("reg", TenantPolicy::Registered, vec![off]), None).unwrap();
    assert_eq!(reg.admit("anyone"), Err(Refusal::Unknown));
    assert_eq!(reg.admit("off"), Err(Refusal::Disabled));
    let (rec, created) = reg.put("anyone", json!({})).await.unwrap();
    assert!(created);
    assert!(rec.spec.enabled);
    assert_eq!(reg.admit("anyone"), Ok(Admission::default()));
    let (_, created) = reg
        .put("anyone", json!({"max_connections": 0}))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(reg.admit("anyone").unwrap().max_connections, Some(0));
    reg.delete("anyone").await.unwrap();
    assert_eq!(reg.admit("anyone"), Err(Refusal::Unknown));
}

#[actix_rt::test]
async fn put_replaces_and_patch_merges_with_null_removing() {
    let reg = TenantRegistry::open(&settings("merge2", TenantPolicy::Open, vec![]), None).unwrap();
    reg.put("a", json!({"max_connections": 3, "max_channels": 7}))
        .await
        .unwrap();
    let r = reg
        .put("a", json!({"id": "a", "rate_limit_per_s": 1}))
        .await
        .unwrap()
        .0;
    assert_eq!(
        r.spec.max_connections, None,
        "PUT replaces the whole record"
    );
    let r = reg
        .patch(
            "a",
            json!({"max_channels": 4, "rate_limit_per_s": null, "source": "config"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.spec.max_channels, r.spec.rate_limit_per_s),
        (Some(4), None)
    );
    assert_eq!(reg.max_channels("a"), Some(4));
    assert_eq!(reg.max_channels("nobody"), None);
}

#[actix_rt::test]
async fn bad_changes_name_their_field_and_change_nothing() {
    let reg = TenantRegistry::open(&settings("bad", TenantPolicy::Open, vec![]), None).unwrap();
    assert_eq!(
        reg.patch("ghost", json!({})).await.unwrap_err(),
        ChangeError::NotFound("ghost".into())
    );
    assert_eq!(
        reg.delete("ghost").await.unwrap_err(),
        ChangeError::NotFound("ghost".into())
    );
    let bad = [
        (json!({"id": "other"}), "id"),
        (json!({"max_connections": -1}), "max_connections"),
        (json!({"max_connections": "5"}), "max_connections"),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"rate_limit_per_s": 2_000_000}), "rate_limit_per_s"),
        (json!({"issuer": "https://i/"}), "jwks_uri"),
        (json!({"jwks_uri": "nope", "issuer": "x"}), "jwks_uri"),
        (json!([1]), "body"),
    ];
    for (body, field) in bad {
        let e = reg.put("t", body.clone()).await.unwrap_err();
        assert_eq!(invalid_field(e), field, "{body}");
    }
    let e = reg.put("t", json!({"max_conns": 1})).await.unwrap_err();
    assert!(e.to_string().contains("max_conns"), "{e}");
    assert!(reg.view().get("t").is_none());
    reg.put("t", json!({})).await.unwrap();
    assert_eq!(
        invalid_field(reg.patch("t", json!({"enabled": null})).await.unwrap_err()),
        "enabled"
    );
}

#[actix_rt::test]
async fn an_issuer_selects_one_tenant() {
    let mut idp = TenantSpec::new("acme");
    idp.issuer = Some("https://acme.idp/".into());
    idp.jwks_uri = Some("https://acme.idp/jwks".into());
    let reg = TenantRegistry::open(&settings("iss", TenantPolicy::Open, vec![idp]), None).unwrap();
    assert_eq!(
        reg.view().by_issuer("https://acme.idp/").unwrap().spec.id,
        "acme"
    );
    assert!(
        reg.view().by_issuer("https://acme.idp").is_none(),
        "exact compare"
    );
    let body = json!({"issuer": "https://acme.idp/", "jwks_uri": "https://x/jwks"});
    assert_eq!(
        reg.put("other", body).await.unwrap_err(),
        ChangeError::IssuerTaken("acme".into())
    );
    // acme may move to another issuer; then "other" may take the old one.
    reg.patch("acme", json!({"issuer": "https://new.idp/"}))
        .await
        .unwrap();
    reg.put(
        "other",
        json!({"issuer": "https://acme.idp/", "jwks_uri": "https://x/jwks"}),
    )
    .await
    .unwrap();
    // Deleting acme's change would give two tenants the same issuer.
    assert_eq!(
        reg.delete("acme").await.unwrap_err(),
        ChangeError::IssuerTaken("other".into())
    );
}

#[actix_rt::test]
async fn an_unwritable_store_refuses_the_change_and_keeps_the_old_record() {
    let s = settings("ro", TenantPolicy::Open, vec![]);
    let reg = TenantRegistry::open(&s, None).unwrap();
    // The file's place is taken by a directory: nothing can be written.
    std::fs::create_dir(&s.path).unwrap();
    let e = reg.put("a", json!({})).await.unwrap_err();
    assert!(matches!(e, ChangeError::Store(_)), "{e:?}");
    assert!(reg.view().get("a").is_none());
}

/// Counts the KickTenant messages the registry sends.
struct Probe(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl actix::Actor for Probe {
    type Context = actix::Context<Self>;
}

impl actix::Handler<KickTenant> for Probe {
    type Result = usize;
    fn handle(&mut self, msg: KickTenant, _: &mut Self::Context) -> usize {
        assert_eq!(msg.code, CloseCode::Kicked);
        assert!(msg.listener.is_none());
        self.0.lock().unwrap().push(msg.tenant.to_string());
        0
    }
}

#[actix_rt::test]
async fn disabling_or_unregistering_closes_the_sessions() {
    use actix::Actor;
    let kicked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let probe = Probe(kicked.clone()).start();
    let reg =
        TenantRegistry::open(&settings("kick", TenantPolicy::Registered, vec![]), None).unwrap();
    reg.attach(probe.clone().recipient());
    reg.put("a", json!({})).await.unwrap();
    reg.put("b", json!({})).await.unwrap();
    reg.patch("a", json!({"enabled": false})).await.unwrap();
    reg.delete("b").await.unwrap();
    reg.put("c", json!({"max_connections": 1})).await.unwrap();
    // A round trip through the probe's mailbox: the kicks were handled before it.
    let _ = probe
        .send(KickTenant {
            tenant: TenantId::new("end".to_owned()),
            listener: None,
            subject: None,
            code: CloseCode::Kicked,
        })
        .await;
    assert_eq!(*kicked.lock().unwrap(), ["a", "b", "end"]);
}
