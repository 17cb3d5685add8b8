//! Where log lines go: standard error, through a writer that never fails.
//!
//! A log line that cannot be written (standard error closed, a pipe whose reader has gone,
//! a full disk) is dropped and counted, and serving goes on: the server must not stop
//! answering because a log shipper restarts. tracing-subscriber answers a failed write with
//! `eprintln!`, which panics when standard error cannot be written, in the middle of the
//! request being logged; [`Stderr`] never gives it a failure to answer.
//!
//! The count is global because logging is set up before any server state exists; `/metrics`
//! reports it as `secretgen_log_lines_dropped_total`.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::fmt::MakeWriter;

static LINES_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped so far because standard error could not take them.
pub fn lines_dropped() -> u64 {
    LINES_DROPPED.load(Ordering::Relaxed)
}

/// `secretgen_log_lines_dropped_total`, read from the global count at each scrape.
#[derive(Debug)]
struct LinesDropped;

impl prometheus_client::metrics::TypedMetric for LinesDropped {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Counter;
}

impl prometheus_client::encoding::EncodeMetric for LinesDropped {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
            &lines_dropped(),
            None,
        )
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Counter
    }
}

/// Adds the count of dropped log lines to `registry`.
pub fn register_metric(registry: &mut prometheus_client::registry::Registry) {
    registry.register(
        "log_lines_dropped",
        "Log lines dropped because standard error could not take them",
        LinesDropped,
    );
}

/// Makes a [`StderrLine`] per log line: standard error, with write errors swallowed and
/// counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = StderrLine;

    fn make_writer(&'a self) -> StderrLine {
        StderrLine { failed: false }
    }
}

/// One log line on its way to standard error. Every write reports success; a line any part
/// of which could not be written is dropped from then on and counted once, when the writer
/// is dropped (tracing-subscriber makes one writer per line).
#[derive(Debug)]
pub struct StderrLine {
    failed: bool,
}

impl Write for StderrLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if !self.failed && io::stderr().write_all(buf).is_err() {
            self.failed = true;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.failed && io::stderr().flush().is_err() {
            self.failed = true;
        }
        Ok(())
    }
}

impl Drop for StderrLine {
    fn drop(&mut self) {
        if self.failed {
            LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metric_reads_the_count_at_each_scrape() {
        let mut registry = prometheus_client::registry::Registry::with_prefix("secretgen");
        register_metric(&mut registry);
        let scrape = || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
            let line = text
                .lines()
                .find(|l| l.starts_with("secretgen_log_lines_dropped_total "))
                .map(str::to_owned);
            line.expect("the counter is exposed")
                .rsplit(' ')
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        let before = scrape();
        StderrLine { failed: true }.write_all(b"x\n").unwrap();
        assert!(scrape() > before);
    }

    #[test]
    fn a_failed_line_is_counted_once_and_reported_as_written() {
        let before = lines_dropped();
        let mut line = StderrLine { failed: true };
        assert!(line.write_all(b"one part").is_ok());
        assert_eq!(line.write(b"and another").unwrap(), 11);
        assert!(line.flush().is_ok());
        drop(line);
        // Other tests may log meanwhile, but none drops a line on a working stderr.
        assert!(lines_dropped() > before);
        let mut ok = StderrLine { failed: false };
        assert!(ok.flush().is_ok());
    }
}
