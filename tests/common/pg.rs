//! A PostgreSQL database of a test's own, on the server named by
//! `SECRETGEN_TEST_DATABASE_URL`: made when the test starts, dropped when it ends.
//!
//! Without the variable a test that needs PostgreSQL says that it was skipped and passes, so
//! that `cargo test` works on a machine with only Rust; `.ci/run` sets it, and sets
//! `SECRETGEN_TEST_REQUIRE_DATABASE=1` so that a missing database fails there instead.

use std::sync::atomic::{AtomicU32, Ordering};

/// The variable that names the PostgreSQL server the tests may use.
pub const URL_VARIABLE: &str = "SECRETGEN_TEST_DATABASE_URL";

/// A database that lives as long as the value.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// A new, empty database; `None` (after saying so) when no server is configured.
    pub fn create(test: &str) -> Option<TestDatabase> {
        let Ok(admin_url) = std::env::var(URL_VARIABLE) else {
            if std::env::var_os("SECRETGEN_TEST_REQUIRE_DATABASE").is_some() {
                panic!("{test}: {URL_VARIABLE} is not set, and this run requires PostgreSQL");
            }
            // Straight to standard error, past the test harness's capture: a skip is seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "{test}: skipped: set {URL_VARIABLE} to a PostgreSQL server to run it"
            );
            return None;
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sg_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VARIABLE}: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("CREATE DATABASE");
        let url = with_database(&admin_url, &name);
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of this database through `port` on 127.0.0.1 (a proxy's).
    pub fn url_through(&self, port: u16) -> String {
        let config: postgres::Config = self.url.parse().unwrap();
        let user = config.get_user().unwrap_or("postgres");
        format!("postgres://{user}@127.0.0.1:{port}/{}", self.name)
    }

    /// A client connected to the database.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }

    /// The server's address, for a proxy in front of it.
    pub fn server_addr(&self) -> std::net::SocketAddr {
        let config: postgres::Config = self.url.parse().unwrap();
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        use std::net::ToSocketAddrs;
        (host.as_str(), port)
            .to_socket_addrs()
            .unwrap()
            .next()
            .unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// `url` with its database replaced by `name` (URL form: `postgres://…/db?…`).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}
