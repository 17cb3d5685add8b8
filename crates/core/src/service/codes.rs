//! The data plane's use cases: `generate` (1 to [`MAX_COUNT`] codes at once), `generate_stream`
//! (up to [`MAX_STREAM_COUNT`], made a chunk at a time as the transport asks) and `preview`
//! (a draft checked as an update is, with sample codes), and the codes they hand over,
//! zeroed when dropped.

use std::sync::Arc;
use std::time::SystemTime;

use zeroize::Zeroize;

use super::{Error, Grant, Operation, Principal, ReadGenerators, Service, Subject, Violation};
use crate::control::ControlPlane;
use crate::metrics::Metrics;
use crate::token::Permission;
use secretgen_engine::config::{ConfigDraft, GeneratorConfig};
use secretgen_engine::generator_type::GeneratorType;

/// The most codes one generate call returns.
pub const MAX_COUNT: i128 = 1000;

/// The most codes one streamed generate call returns.
pub const MAX_STREAM_COUNT: u64 = 10_000_000;

/// About how many bytes of codes a chunk of a stream holds (at least one code).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Generate codes: the data plane.
#[derive(Debug)]
pub enum GenerateCodes {}

impl Operation for GenerateCodes {
    const PERMISSION: Permission = Permission::CodesGenerate;
    const RATE_LIMITED: bool = true;
}

/// What a draft configuration would be, without saving it: every violated rule, its entropy
/// when it can be computed, and sample codes when it is valid.
#[derive(Debug)]
pub struct Preview {
    /// Every violated rule; empty when the draft is valid.
    pub violations: Vec<Violation>,
    /// The entropy of one code, in bits, when the length and the alphabet are valid.
    pub entropy_bits: Option<f64>,
    /// [`PREVIEW_SAMPLES`] codes made with the draft, when it is valid.
    pub samples: Option<Codes>,
}

/// Sample codes in a preview.
pub const PREVIEW_SAMPLES: usize = 5;

/// Codes made by one generate call: `count` codes of `length` characters laid end to end,
/// zeroed when dropped.
pub struct Codes {
    /// The type they were made for.
    pub generator_type: GeneratorType,
    /// The sequence of the configuration they were made with.
    pub sequence: u64,
    /// Characters per code.
    pub length: usize,
    /// When they expire; `None` for never.
    pub expires_at: Option<SystemTime>,
    bytes: Vec<u8>,
}

impl Drop for Codes {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// Bytes that hold secrets (codes, or an answer that carries them): zeroed when dropped. A
/// transport hands them to its writer as [`bytes::Bytes`] with [`bytes::Bytes::from_owner`].
pub struct SecretBytes(pub Vec<u8>);

impl AsRef<[u8]> for SecretBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Codes {
    /// The codes laid end to end, handed over without a copy; zeroed when the last clone
    /// of the bytes is dropped.
    pub fn into_bytes(mut self) -> bytes::Bytes {
        bytes::Bytes::from_owner(SecretBytes(std::mem::take(&mut self.bytes)))
    }

    /// Codes laid end to end in `bytes` (copied), as made for `generator_type`: for tests of
    /// what a transport renders, and the fuzz targets.
    pub fn from_parts(
        generator_type: GeneratorType,
        sequence: u64,
        length: usize,
        expires_at: Option<SystemTime>,
        bytes: &[u8],
    ) -> Codes {
        Codes {
            generator_type,
            sequence,
            length,
            expires_at,
            bytes: bytes.to_vec(),
        }
    }

    /// Each code, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.bytes.chunks_exact(self.length)
    }

    /// How many codes.
    pub fn count(&self) -> usize {
        self.bytes.len() / self.length
    }
}

impl std::fmt::Debug for Codes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codes")
            .field("generator_type", &self.generator_type)
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Checks `draft` against every rule, as [`Service::update`] does, and saves nothing:
    /// its violations, its entropy and, when it is valid, [`PREVIEW_SAMPLES`] codes made with
    /// it (not counted as generated: no one is sent them). A draft with a field its
    /// transport could not read (a string where a flag must be true or false, an unknown
    /// type) is refused as invalid, with every violation a PUT of it lists: a preview
    /// judges values, not shapes.
    pub fn preview(
        &self,
        _: &Grant<ReadGenerators>,
        draft: &ConfigDraft,
    ) -> Result<Preview, Error> {
        if !draft.unreadable.is_empty() {
            // Every violation, as a PUT of the draft lists them (SPEC section 4).
            let violations = match GeneratorConfig::new(draft).map_err(Error::from) {
                Err(Error::Invalid { violations, .. }) => violations,
                _ => Vec::new(),
            };
            return Err(Error::Invalid {
                message: "invalid preview request",
                violations,
            });
        }
        match GeneratorConfig::new(draft) {
            Ok(config) => {
                let generator = secretgen_engine::Generator::new(&config);
                let samples = fill(&generator, config.generator_type(), 0, PREVIEW_SAMPLES)?;
                Ok(Preview {
                    violations: Vec::new(),
                    entropy_bits: Some(config.entropy_bits()),
                    samples: Some(samples),
                })
            }
            Err(e) => Ok(Preview {
                entropy_bits: e.entropy_bits(),
                violations: match Error::from(e) {
                    Error::Invalid { violations, .. } => violations,
                    _ => Vec::new(),
                },
                samples: None,
            }),
        }
    }

    /// `count` codes (1 to [`MAX_COUNT`]) of `generator_type`'s live configuration, loaded
    /// now: a change acknowledged before this call is seen.
    pub fn generate(
        &self,
        _: &Grant<GenerateCodes>,
        generator_type: GeneratorType,
        count: i128,
    ) -> Result<Codes, Error> {
        if !(1..=MAX_COUNT).contains(&count) {
            return Err(Error::invalid(
                "invalid generate request",
                Subject::Count,
                format!("must be between 1 and {MAX_COUNT}, got {count}"),
            ));
        }
        make_codes(&self.control, &self.metrics, generator_type, count as usize)
    }

    /// `count` codes (1 to [`MAX_STREAM_COUNT`]) of `generator_type`, made a chunk at a time
    /// as the caller takes them, each chunk with the configuration live when it is made.
    /// The call is admitted (and rate limited) once, for the whole stream; a token revoked
    /// or expired meanwhile ends it, unauthenticated, at its next chunk.
    pub fn generate_stream(
        &self,
        grant: &Grant<GenerateCodes>,
        generator_type: GeneratorType,
        count: u64,
    ) -> Result<CodeStream, Error> {
        if !(1..=MAX_STREAM_COUNT).contains(&count) {
            return Err(Error::invalid(
                "invalid generate request",
                Subject::Count,
                format!("must be between 1 and {MAX_STREAM_COUNT}, got {count}"),
            ));
        }
        Ok(CodeStream {
            control: Arc::clone(&self.control),
            metrics: Arc::clone(&self.metrics),
            principal: Arc::clone(&grant.principal),
            generator_type,
            left: count,
        })
    }
}

/// `count` codes of `generator_type`'s live configuration, loaded now, counted in `metrics`.
fn make_codes(
    control: &ControlPlane,
    metrics: &Metrics,
    generator_type: GeneratorType,
    count: usize,
) -> Result<Codes, Error> {
    let snapshot = control.instance().load(generator_type);
    let codes = fill(
        snapshot.generator(),
        generator_type,
        snapshot.version().sequence,
        count,
    )?;
    metrics.codes_generated(generator_type, count);
    Ok(codes)
}

/// `count` codes made by `generator` (the configuration of `generator_type` at `sequence`),
/// expiring from now.
fn fill(
    generator: &secretgen_engine::Generator,
    generator_type: GeneratorType,
    sequence: u64,
    count: usize,
) -> Result<Codes, Error> {
    let length = generator.length();
    let mut codes = Codes {
        generator_type,
        sequence,
        length,
        expires_at: None,
        bytes: vec![0u8; count * length],
    };
    let made_at = SystemTime::now();
    generator.fill_codes(&mut codes.bytes).map_err(|e| {
        tracing::error!(error = %e, "code generation failed");
        Error::Internal("the random source failed; no code was made")
    })?;
    codes.expires_at = generator.expires_at(made_at);
    Ok(codes)
}

/// The codes of [`Service::generate_stream`], made a chunk of about [`CHUNK_BYTES`] at a
/// time, only when the next is asked for: a caller that takes them slowly holds nothing
/// back on the server.
#[derive(Debug)]
pub struct CodeStream {
    control: Arc<ControlPlane>,
    metrics: Arc<Metrics>,
    /// Whose token the stream runs under: asked at every chunk whether it is still live.
    principal: Arc<Principal>,
    generator_type: GeneratorType,
    left: u64,
}

impl Iterator for CodeStream {
    type Item = Result<Codes, Error>;

    fn next(&mut self) -> Option<Result<Codes, Error>> {
        if self.left == 0 {
            return None;
        }
        if !self.principal.is_live() {
            self.left = 0;
            return Some(Err(Error::Unauthenticated(
                "the token was revoked or has expired",
            )));
        }
        // The configuration live now, loaded once for the chunk's size and its codes: a
        // change may make codes longer mid-stream.
        let snapshot = self.control.instance().load(self.generator_type);
        let generator = snapshot.generator();
        let per_chunk = (CHUNK_BYTES / generator.length().max(1)).max(1) as u64;
        let count = per_chunk.min(self.left);
        let chunk = fill(
            generator,
            self.generator_type,
            snapshot.version().sequence,
            count as usize,
        );
        if chunk.is_ok() {
            self.metrics
                .codes_generated(self.generator_type, count as usize);
        }
        match &chunk {
            Ok(_) => self.left -= count,
            // A failed chunk ends the stream.
            Err(_) => self.left = 0,
        }
        Some(chunk)
    }
}
