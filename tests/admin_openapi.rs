//! Keeps docs/admin-api.yaml from drifting: every route the server serves is
//! documented with its methods, every documented operation is served (and no
//! other method is), and real responses — successes and errors — have a
//! documented status and match the documented schema (types, required keys,
//! enums, no undocumented keys where the schema closes the object).

use common::admin::*;
use common::channels::CHANNELS;
use common::*;
use serde_json::{json, Value};
use wsplus::settings::{BridgeEndpoint, BridgeSettings};

/// Methods probed on every documented path.
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The OpenAPI document.
fn doc() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/admin-api.yaml"))
        .expect("docs/admin-api.yaml");
    let doc: Value = serde_norway::from_str(&text).expect("valid YAML");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0"));
    doc
}

/// `node` with its `$ref` (if any) followed, recursively.
fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local $ref");
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling {r}")),
            )
        }
        None => node,
    }
}

/// Checks `value` against `schema` (the subset of OpenAPI 3.0 the document
/// uses), pushing one line per mismatch to `errs`.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errs: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) && schema.get("type").is_some() {
            errs.push(format!("{at}: null but not nullable"));
        }
        return;
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        check(doc, part, value, at, errs);
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            errs.push(format!("{at}: {value} not in {allowed:?}"));
        }
    }
    let ok = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_u64() || value.is_i64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(t) => panic!("{at}: unsupported type {t}"),
    };
    if !ok {
        errs.push(format!("{at}: {value} is not {}", schema["type"]));
        return;
    }
    if let Some(items) = schema.get("items") {
        for (i, v) in value.as_array().unwrap().iter().enumerate() {
            check(doc, items, v, &format!("{at}[{i}]"), errs);
        }
    }
    if let Some(obj) = value.as_object() {
        for key in schema["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(key.as_str().unwrap()) {
                errs.push(format!("{at}: required {key} missing"));
            }
        }
        let props = schema.get("properties");
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(doc, s, v, &format!("{at}.{k}"), errs),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errs.push(format!("{at}: undocumented key {k}")),
                    Some(s @ Value::Object(_)) => check(doc, s, v, &format!("{at}.{k}"), errs),
                    _ => {}
                },
            }
        }
    }
}

/// True when the documented path template matches a concrete path.
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}')))
}

/// `template` with every `{param}` replaced by `args(param)`.
fn fill(template: &str, args: impl Fn(&str) -> String) -> String {
    template
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => args(name),
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// Every (template, method, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                ops.push((path.clone(), m.to_owned(), op.clone()));
            }
        }
    }
    ops
}

/// True when the operation is served without a token.
fn is_public(doc: &Value, op: &Value) -> bool {
    let security = op.get("security").unwrap_or(&doc["security"]);
    security.as_array().is_some_and(|s| s.is_empty())
}

/// Asserts `res.status` is documented for `op` and its body matches the
/// documented schema of that response.
fn conforms(doc: &Value, what: &str, op: &Value, res: &Response) {
    let documented = &op["responses"][res.status.to_string()];
    assert!(
        !documented.is_null(),
        "{what}: status {} undocumented ({})",
        res.status,
        res.body
    );
    let content = resolve(doc, documented)["content"]
        .as_object()
        .expect("content");
    let media = res.header("content-type").unwrap_or_default();
    let media = media.split(';').next().unwrap().trim();
    let spec = content
        .get(media)
        .unwrap_or_else(|| panic!("{what}: {media} undocumented for {}", res.status));
    if media == "application/json" {
        let mut errs = Vec::new();
        check(doc, &spec["schema"], &res.json(), what, &mut errs);
        assert!(errs.is_empty(), "{what}: {errs:#?}\nbody: {}", res.body);
    }
}

/// A server with clients of `acme` on [`EVENTS`] and one bridge (`hq`,
/// to an address where nothing listens).
fn app() -> TestApp {
    let mut s = admin_settings();
    s.listeners.push(common::channels::channels_listener(
        CHANNELS,
        wsplus::settings::Scope::Tenant,
        wsplus::settings::ChannelsSettings {
            history_size: 10,
            history_ttl_s: 60,
            presence: true,
            ..Default::default()
        },
    ));
    s.bridges = vec![BridgeSettings {
        name: "hq".into(),
        url: "ws://127.0.0.1:9/upstream".into(),
        into: Some(BridgeEndpoint {
            listener: EVENTS.into(),
            tenant: "acme".into(),
        }),
        ..Default::default()
    }];
    TestApp::spawn(s)
}

#[test]
fn every_served_route_is_documented_with_its_method() {
    let doc = doc();
    let public = [("GET", "/healthz"), ("GET", "/readyz")];
    for (method, path) in ROUTES.iter().chain(&public) {
        let method = method.to_ascii_lowercase();
        let found = operations(&doc)
            .into_iter()
            .any(|(t, m, _)| m == method && matches(&t, path.split('?').next().unwrap()));
        assert!(found, "{method} {path} is not in docs/admin-api.yaml");
    }
}

#[actix_rt::test]
async fn documented_operations_are_served_and_no_other_method_is() {
    let doc = doc();
    let app = app();
    for (template, item) in doc["paths"].as_object().unwrap() {
        let path = fill(template, |_| "x".into());
        for m in METHODS {
            let mut req = Req::new(&m.to_ascii_uppercase(), &path);
            if m == "post" {
                req = req.json(&json!({}));
            }
            let res = req.send(&app).await;
            let unrouted = res.status == 405
                || (res.status == 404
                    && res.json()["error"]
                        .as_str()
                        .unwrap()
                        .starts_with("no route"));
            assert_eq!(
                unrouted,
                item.get(m).is_none(),
                "{m} {template}: {} {}",
                res.status,
                res.body
            );
        }
    }
}

#[actix_rt::test]
async fn real_responses_match_the_documented_schemas() {
    let doc = doc();
    let app = app();
    let _clients = [
        app.connect(EVENTS, "acme").await,
        app.connect(EVENTS, "acme").await,
    ];
    let session = session_ids(&app, "acme").await[0].clone();
    let token = common::channels::channels_token("acme", Some("u"), 3600, json!({}));
    let mut subscriber = common::channels::Chan::connect(&app, CHANNELS, &token).await;
    // The channel detail then has a present client to check.
    subscriber.subscribe("news").await;
    let channels_session = subscriber.connected["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Query parameters take their documented examples.
    let query = |op: &Value| -> String {
        let q: Vec<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| resolve(&doc, p))
            .filter(|p| p["in"] == "query" && p.get("example").is_some())
            .map(|p| {
                let example = &p["example"];
                let value = example
                    .as_str()
                    .map_or_else(|| example.to_string(), str::to_owned);
                format!("{}={value}", p["name"].as_str().unwrap())
            })
            .collect();
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    };
    let mut ops = operations(&doc);
    // Reads first, then publish, then the kicks (one session before its tenant).
    ops.sort_by_key(|(t, m, _)| {
        let rank = ["get", "post", "delete"].iter().position(|x| x == m);
        (rank, t.starts_with("/admin/v1/tenants"))
    });
    for (template, method, op) in &ops {
        let real = |name: &str| match name {
            "tenant" => "acme".to_owned(),
            "id" if template.contains("subscriptions") => channels_session.clone(),
            "id" => session.clone(),
            "name" => "hq".to_owned(),
            "channel" => "news".to_owned(),
            other => panic!("undocumented parameter {other}"),
        };
        let path = format!("{}{}", fill(template, real), query(op));
        let what = format!("{method} {path}");
        let mut req = Req::new(&method.to_ascii_uppercase(), &path);
        if let Some(body) = op.pointer("/requestBody/content/application~1json") {
            req = req.json(&body["example"]);
        }
        if !is_public(&doc, op) {
            let anon = req.clone().authorization(None).send(&app).await;
            assert_eq!(anon.status, 401, "{what}");
            conforms(&doc, &format!("{what} (no token)"), op, &anon);
        }
        let res = req.send(&app).await;
        assert_eq!(res.status, 200, "{what}: {}", res.body);
        conforms(&doc, &what, op, &res);
        if template.contains('{') {
            let unknown = Req::new(
                &method.to_ascii_uppercase(),
                &format!("{}{}", fill(template, |_| "nope".into()), query(op)),
            );
            conforms(
                &doc,
                &format!("{what} (unknown)"),
                op,
                &unknown.send(&app).await,
            );
        }
    }
    let publish = &doc["paths"]["/admin/v1/publish"]["post"];
    let bad = [
        Req::new("POST", "/admin/v1/publish")
            .json(&json!({"listener": EVENTS, "scope": "tenant", "payload": 1})),
        Req::new("POST", "/admin/v1/publish")
            .json(&json!({"listener": "/nope", "scope": "global", "payload": 1})),
        Req::new("POST", "/admin/v1/publish")
            .raw_body(Some("application/json"), vec![b' '; 70_000]),
    ];
    for (req, status) in bad.into_iter().zip([400, 404, 413]) {
        let res = req.send(&app).await;
        assert_eq!(res.status, status, "{}", res.body);
        conforms(&doc, &format!("publish ({status})"), publish, &res);
    }
}
