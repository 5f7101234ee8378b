//! Admin API authentication (docs/admin-api.yaml): every route but /healthz and
//! /readyz needs `Authorization: Bearer <token>`; anything else, unknown paths
//! included, gets a JSON 401, and the token never appears in a response.

use common::admin::*;
use common::*;

/// Authorization headers that must be refused.
const WRONG: &[Option<&str>] = &[
    None,
    Some("Bearer wrong-token"),
    Some("Bearer "),
    Some("Basic dGVzdC1hZG1pbi10b2tlbi0wMTIzNDU2Nzg5"),
    Some("test-admin-token-0123456789"),
    Some("Token test-admin-token-0123456789"),
];

#[actix_rt::test]
async fn health_checks_need_no_token() {
    let app = TestApp::spawn(base_settings());
    for path in ["/healthz", "/readyz"] {
        let res = Req::new("GET", path).authorization(None).send(&app).await;
        assert_eq!(res.status, 200, "{path}: {}", res.body);
    }
}

#[actix_rt::test]
async fn protected_routes_refuse_missing_or_wrong_tokens() {
    let app = TestApp::spawn(base_settings());
    for (method, path) in ROUTES {
        for auth in WRONG {
            let res = Req::new(method, path).authorization(*auth).send(&app).await;
            res.expect_error(401);
            assert_eq!(res.header("www-authenticate"), Some("Bearer"));
        }
        // With the token the request reaches its handler: anything but 401.
        let res = Req::new(method, path).send(&app).await;
        assert_ne!(res.status, 401, "{method} {path}: {}", res.body);
        assert_ne!(res.status, 405, "{method} {path}: {}", res.body);
    }
    let res = get(&app, "/admin/v1/stats").await;
    assert_eq!(res.status, 200, "{}", res.body);
}

#[actix_rt::test]
async fn unknown_paths_are_401_without_token_and_json_404_with_it() {
    let app = TestApp::spawn(base_settings());
    for path in [
        "/nope",
        "/admin",
        "/admin/v1/nope",
        "/healthz/x",
        "/console/nope",
    ] {
        let anon = Req::new("GET", path).authorization(None).send(&app).await;
        anon.expect_error(401);
        get(&app, path).await.expect_error(404);
    }
}

#[actix_rt::test]
async fn a_wrong_method_is_a_json_405_after_auth() {
    let app = TestApp::spawn(base_settings());
    Req::new("POST", "/admin/v1/stats")
        .authorization(None)
        .send(&app)
        .await
        .expect_error(401);
    Req::new("POST", "/admin/v1/stats")
        .send(&app)
        .await
        .expect_error(405);
    Req::new("DELETE", "/healthz")
        .authorization(None)
        .send(&app)
        .await
        .expect_error(405);
}
