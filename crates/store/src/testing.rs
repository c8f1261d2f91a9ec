//! Helpers for tests of the store and the server: a fresh PostgreSQL database on the
//! server named by `MOBIUS_TEST_POSTGRES` (`.ci/postgres` starts one).

use sqlx::Executor;

/// The URL of a new, empty database, or `None` (with the reason printed) when no
/// PostgreSQL server is configured. Under CI (`CI=true`) a missing server fails the test.
pub async fn fresh_postgres() -> Option<String> {
    let Ok(admin) = std::env::var("MOBIUS_TEST_POSTGRES") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("MOBIUS_TEST_POSTGRES is not set under CI: .ci/run starts PostgreSQL with .ci/postgres");
        }
        eprintln!(
            "skipped: PostgreSQL tests need MOBIUS_TEST_POSTGRES (export MOBIUS_TEST_POSTGRES=\"$(.ci/postgres)\")"
        );
        return None;
    };
    sqlx::any::install_default_drivers();
    let bytes = crate::crypto::random_bytes::<6>().expect("randomness");
    let name = format!("mobius_test_{}", hex::encode(bytes));
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to MOBIUS_TEST_POSTGRES={admin}: {e}"));
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create the test database");
    let (base, _) = admin.rsplit_once('/').expect("a database URL ends in /NAME");
    Some(format!("{base}/{name}"))
}
