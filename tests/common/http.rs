//! The HTTP client of the tests: every status is an answer (never an error), 30 s at most per
//! request, and a JSON body parsed once.

use std::time::Duration;

use serde_json::Value;

/// An answer: status, body, and the headers the tests look at. A JSON body (by its content
/// type) is parsed, any other is a [`Value::String`], an empty one [`Value::Null`].
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub allow: Option<String>,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub cache_control: Option<String>,
}

/// The agent of every test client: 30 s at most per request, every status an answer.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A client of one server, at `base` (`http://host:port` or `https://…`).
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            base: base.to_owned(),
            agent: agent(),
        }
    }

    /// The same server through `agent` (one that trusts a test CA, say).
    pub fn with_agent(&self, agent: ureq::Agent) -> Client {
        Client {
            base: self.base.clone(),
            agent,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Any request: `method`, `path`, an optional bearer token and an optional JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Answer {
        self.try_request(method, path, token, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// [`Client::request`], giving back transport errors (a stopped server) instead of
    /// panicking.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<Answer, ureq::Error> {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        let request = match token {
            Some(t) => request.header("Authorization", format!("Bearer {t}")),
            None => request,
        };
        let result = match body {
            Some(b) => self.agent.run(
                request
                    .header("Content-Type", "application/json")
                    .body(b.to_owned())
                    .unwrap(),
            ),
            None => self.agent.run(request.body(()).unwrap()),
        };
        let mut response = result?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let allow = header("allow");
        let content_type = header("content-type");
        let retry_after = header("retry-after");
        let cache_control = header("cache-control");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        let json = content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json"));
        let body = if text.is_empty() {
            Value::Null
        } else if !json {
            Value::String(text)
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
        };
        Ok(Answer {
            status,
            body,
            allow,
            content_type,
            retry_after,
            cache_control,
        })
    }
}
