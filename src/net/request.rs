//! What both transports share about a request, below them: the largest body (or gRPC
//! message) accepted, and the request id that every answer and log line carries.

use std::time::SystemTime;

/// The largest request body accepted, and the largest gRPC message.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The header (HTTP) or metadata key (gRPC) that carries a request's id, in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// The request id of a call: the caller's when it is plain, a new one otherwise.
pub fn request_id(given: Option<&str>) -> String {
    given
        .filter(|id| plain_request_id(id))
        .map_or_else(new_request_id, str::to_owned)
}

/// Whether a caller's request id is kept: 1 to 64 letters, digits, `-` and `_`.
fn plain_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 16 hex digits: a random start drawn once per process, then counting up. Unique within a
/// process and unlikely to repeat across restarts, without a system call per request; drawn
/// apart from the codes' random stream, which feeds nothing but codes.
fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            bytes = nanos.to_le_bytes();
        }
        u64::from_le_bytes(bytes)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", start.wrapping_add(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_id_is_kept_and_any_other_replaced() {
        assert_eq!(request_id(Some("abc-DEF_123")), "abc-DEF_123");
        for bad in ["", "a b", "é", &"x".repeat(65)] {
            let id = request_id(Some(bad));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 16);
        }
        assert_ne!(request_id(None), request_id(None));
    }
}
