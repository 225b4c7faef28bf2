//! Black-box tests of the alerts (reference §7.12, adapted: alerts are evaluated by the
//! server itself, the `/alerts` API is always there, Kapacitor is optional).

use crate::support as support_pulse;

use std::time::Duration;

use support_pulse::{request, FakeHttp, Server};

fn alerts_url(s: &Server) -> String {
    format!("http://{}/alerts", s.http)
}

#[test]
fn alert_api_with_a_fake_kapacitor() {
    let kap = FakeHttp::start();
    let s = Server::start(&["-k", &kap.url()]);
    // Startup pings Kapacitor.
    assert!(kap.wait_for(Duration::from_secs(10), |r| r.path == "/kapacitor/v1/ping").is_some());
    let body = r#"{"metric":"cpu_used","threshold":"80","tags":{"host":"abcd"},"post":"http://h/a"}"#;
    let r = request("POST", &alerts_url(&s), Some("secret"), Some(body));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let a = r.json();
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(a["level"], "crit");
    assert_eq!(a["duration"], "5m");
    assert_eq!(a["threshold"], "80");
    assert_eq!(a["metric"], "cpu_used");
    assert!(r.body.starts_with(&format!("{{\"id\":\"{id}\",\"tags\":{{\"host\":\"abcd\"}},\"metric\"")), "{}", r.body);
    // Kapacitor received the original's batch task.
    let task =
        kap.wait_for(Duration::from_secs(10), |r| r.method == "POST" && r.path == "/kapacitor/v1/tasks").unwrap();
    let t: serde_json::Value = serde_json::from_str(&task.body).unwrap();
    assert_eq!(t["type"], "batch");
    assert_eq!(t["status"], "enabled");
    assert_eq!(t["dbrps"], serde_json::json!([{"db": "statistics", "rp": "one_day"}]));
    assert_eq!(t["id"], id.as_str());
    let script = t["script"].as_str().unwrap();
    for part in [
        "FROM \"statistics\".\"one_day\".\"cpu_used\"",
        "WHERE \"host\" = 'abcd'",
        ".period(5m)",
        ".every(30s)",
        ".id('[abcd] cpu_used')",
        ".crit(lambda: \"mean_cpu_used\" > 80)",
    ] {
        assert!(script.contains(part), "{part}:\n{script}");
    }
    // Errors as the original.
    let r = request("POST", &alerts_url(&s), Some("secret"), Some(r#"{"metric":"cpu_used","threshold":"80"}"#));
    assert_eq!((r.status, r.body.as_str()), (400, "{\"error\":\"Missing value in payload\"}\n"));
    let r = request("POST", &alerts_url(&s), Some("secret"), Some("{not json"));
    assert_eq!((r.status, r.body.as_str()), (400, "{\"error\":\"Bad JSON syntax received in body\"}\n"));
    // The issue: a numeric threshold is accepted.
    let r = request(
        "POST",
        &alerts_url(&s),
        Some("secret"),
        Some(r#"{"metric":"ram","threshold":80,"post":"http://h/a"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["threshold"], "80");
    let other = r.json()["id"].as_str().unwrap().to_string();
    // PUT with an existing id updates it (Kapacitor gets a PATCH).
    let upd = format!(r#"{{"id":"{id}","metric":"cpu_used","threshold":"90","operator":"lt","post":"http://h/a"}}"#);
    let r = request("PUT", &alerts_url(&s), Some("secret"), Some(&upd));
    assert_eq!(r.json()["id"], id.as_str());
    assert!(kap
        .wait_for(Duration::from_secs(10), |r| r.method == "PATCH" && r.path == format!("/kapacitor/v1/tasks/{id}"))
        .is_some_and(|r| r.body.contains("\\\"mean_cpu_used\\\" < 90")));
    let r = request("GET", &format!("{}/{id}", alerts_url(&s)), Some("secret"), None);
    assert_eq!(r.json()["threshold"], "90");
    let list = request("GET", &alerts_url(&s), Some("secret"), None).json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    // A Kapacitor error is a 400 and the alert is not kept.
    kap.status.store(500, std::sync::atomic::Ordering::Relaxed);
    let r =
        request("POST", &alerts_url(&s), Some("secret"), Some(r#"{"metric":"x","threshold":"1","post":"http://h/a"}"#));
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().starts_with("Failed to create task - "));
    kap.status.store(200, std::sync::atomic::Ordering::Relaxed);
    // DELETE.
    let r = request("DELETE", &format!("{}/{id}", alerts_url(&s)), Some("secret"), None);
    assert_eq!((r.status, r.body.as_str()), (200, "{\"msg\":\"Success\"}\n"));
    assert!(kap.wait_for(Duration::from_secs(10), |r| r.method == "DELETE" && r.path.ends_with(&id)).is_some());
    assert_eq!(request("GET", &format!("{}/{id}", alerts_url(&s)), Some("secret"), None).status, 404);
    assert_eq!(request("DELETE", &format!("{}/{id}", alerts_url(&s)), Some("secret"), None).status, 404);
    // Auth applies.
    assert_eq!(request("GET", &alerts_url(&s), None, None).status, 401);
    let _ = other;
}

#[test]
fn alerts_are_evaluated_and_posted() {
    crate::cases::alert_fires_and_recovers(support_pulse::Store::Embedded);
}

#[test]
fn alerts_persist_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path(), &[]);
    let body = r#"{"metric":"cpu_used","threshold":"80","tags":{"host":"abcd"},"post":"http://127.0.0.1:9/a"}"#;
    let r = request("POST", &alerts_url(&s), Some("secret"), Some(body));
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert!(s.stop().success());
    let s = Server::start_in(dir.path(), &[]);
    let r = request("GET", &format!("{}/{id}", alerts_url(&s)), Some("secret"), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metric"], "cpu_used");
    assert_eq!(r.json()["tags"]["host"], "abcd");
}
