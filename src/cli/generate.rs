//! `secretgen generate`: codes of one generator type, one per line, drawn on every core.
//!
//! The output is cut into chunks of whole lines, [`CHUNK_BYTES`] at most (the last one
//! holds what is left). With one thread the chunks are drawn and written in turn. With more,
//! each worker claims the next chunk's number, fills one of its own buffers with codes from
//! its own [`CodeRng`] (keyed from the operating system) and hands it to the one writer,
//! which writes it and gives the buffer back: memory stays at [`BUFFERS_PER_WORKER`] chunks a
//! worker, and every buffer is zeroed when it is dropped. Which chunk the writer gets first
//! depends on timing, never on the codes, and each code is drawn from a stream no other code
//! shares a byte of: the codes stay independent and exactly uniform, as with one thread.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

use clap::Args;
use secretgen::store::{PostgresOptions, PostgresStore};
use secretgen::{
    CodeLength, CodeRng, ConfigDraft, EntropyError, Generator, GeneratorConfig, GeneratorType,
    SqliteStore, Store, control,
};
use zeroize::Zeroizing;

use super::{CliError, StoreArgs};

/// `secretgen generate <TYPE>`: the stored configuration of the type when the data directory
/// holds a store, ZITADEL's default otherwise, changed for this run by the flags. Giving any
/// class flag replaces the type's classes with those given.
#[derive(Debug, Args)]
pub(super) struct GenerateArgs {
    /// Generator type: full name, short name (any case) or number, e.g. OTP_SMS or 7.
    #[arg(value_name = "TYPE")]
    generator_type: String,
    /// How many codes to print.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Characters per code (1 to 1024).
    #[arg(long)]
    length: Option<i64>,
    /// Include lower-case letters.
    #[arg(long)]
    lower: bool,
    /// Include upper-case letters.
    #[arg(long)]
    upper: bool,
    /// Include digits.
    #[arg(long)]
    digits: bool,
    /// Include ZITADEL's 27 symbols.
    #[arg(long)]
    symbols: bool,
    /// Leave out 0 O o 1 l I |.
    #[arg(long)]
    exclude_ambiguous: bool,
    /// Every included class appears at least once in every code.
    #[arg(long)]
    require_each_class: bool,
    /// Threads that draw codes, 1 to 1024 (default: one per core); one more writes them.
    /// With 1, one thread draws and writes.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    #[command(flatten)]
    store: StoreArgs,
}

/// The configuration for this run: the stored one or the default of the type, with the
/// flags applied.
fn configuration(args: &GenerateArgs) -> Result<GeneratorConfig, CliError> {
    let generator_type: GeneratorType = args.generator_type.parse()?;
    let base = stored_configuration(&args.store, generator_type)?
        .unwrap_or_else(|| GeneratorConfig::default_for(generator_type));
    let mut draft: ConfigDraft = base.to_draft();
    if let Some(length) = args.length {
        draft.length = CodeLength::new(length);
    }
    if args.lower || args.upper || args.digits || args.symbols {
        draft.include_lower_letters = args.lower;
        draft.include_upper_letters = args.upper;
        draft.include_digits = args.digits;
        draft.include_symbols = args.symbols;
    }
    draft.exclude_ambiguous |= args.exclude_ambiguous;
    draft.require_each_class |= args.require_each_class;
    Ok(GeneratorConfig::new(&draft)?)
}

/// The configuration of `generator_type` in the store, if there is one. The store is only
/// read: a server may be running on it.
fn stored_configuration(
    store: &StoreArgs,
    generator_type: GeneratorType,
) -> Result<Option<GeneratorConfig>, CliError> {
    let store: Arc<dyn Store> = match &store.database_url {
        Some(url) => Arc::new(PostgresStore::connect(url, PostgresOptions::default())?),
        None if !SqliteStore::exists(&store.data_dir.path) => return Ok(None),
        None => Arc::new(SqliteStore::open_read_only(&store.data_dir.path)?),
    };
    let Some(instance) = store.default_instance()? else {
        return Ok(None);
    };
    let events = store.events(&instance)?;
    let mut snapshots = control::replay(&events)?;
    Ok(snapshots
        .remove(&generator_type)
        .map(|s| s.config().clone()))
}

/// Output is written in chunks of whole lines, at most this many bytes each.
const CHUNK_BYTES: usize = 64 * 1024;

/// Chunk buffers per worker: one being filled while the other waits for the writer.
const BUFFERS_PER_WORKER: usize = 2;

/// A chunk's buffer, zeroed when dropped wherever that happens (a worker, the writer, a
/// channel closed with it inside).
type Chunk = Zeroizing<Vec<u8>>;

pub(super) fn generate(args: &GenerateArgs) -> Result<(), CliError> {
    let config = configuration(args)?;
    let generator = Generator::new(&config);
    let plan = Plan::new(generator.length(), args.count);
    let threads = args.threads.map_or_else(
        || thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    // No more workers than chunks: a run of a few codes starts no thread.
    let workers = u64::try_from(threads).map_or(threads, |t| t.min(plan.chunks) as usize);
    widen_pipe();
    let mut out = io::stdout().lock();
    let result = if workers <= 1 {
        write_alone(&generator, &plan, &mut out)
    } else {
        write_in_parallel(&generator, &plan, workers, &mut out)
    };
    match result {
        // The reader has all it wanted (`| head`): not a failure.
        Err(CliError::Output { source, .. }) if source.kind() == io::ErrorKind::BrokenPipe => {
            Ok(())
        }
        other => other,
    }
}

/// Pipe buffer asked for on standard output: 16 chunks.
const PIPE_BYTES: usize = 16 * CHUNK_BYTES;

/// When standard output is a pipe, asks Linux to make its buffer [`PIPE_BYTES`] (the default
/// is one chunk's 64 KiB, so that the writer waits for the reader after every chunk and both
/// change places on the cores each time). Not a pipe, or refused (over
/// `/proc/sys/fs/pipe-max-size`): nothing changes.
fn widen_pipe() {
    #[cfg(target_os = "linux")]
    let _ = rustix::pipe::fcntl_setpipe_size(io::stdout(), PIPE_BYTES);
}

/// How `count` codes of `length` characters are cut into chunks of lines.
struct Plan {
    length: usize,
    count: u64,
    /// Codes in a chunk; the last chunk may hold fewer.
    per_chunk: usize,
    chunks: u64,
}

impl Plan {
    fn new(length: usize, count: u64) -> Plan {
        let per_chunk = (CHUNK_BYTES / (length + 1)).max(1);
        Plan {
            length,
            count,
            per_chunk,
            chunks: count.div_ceil(per_chunk as u64),
        }
    }

    /// Bytes of a line: the code and its newline.
    fn stride(&self) -> usize {
        self.length + 1
    }

    /// A buffer for the largest chunk.
    fn buffer(&self) -> Chunk {
        Zeroizing::new(vec![0; self.per_chunk * self.stride()])
    }

    /// Codes in chunk `k` (`k < chunks`): a whole chunk's, or what is left of `count`.
    fn codes_in(&self, k: u64) -> usize {
        (self.count - k * self.per_chunk as u64).min(self.per_chunk as u64) as usize
    }

    /// Fills the start of `chunk` with chunk `k`'s lines and returns how many bytes they
    /// take: the codes in one bulk draw ([`Generator::fill_codes_with`], the engine's
    /// fastest path), then each moved to its line.
    fn fill(
        &self,
        generator: &Generator,
        rng: &mut CodeRng,
        chunk: &mut [u8],
        k: u64,
    ) -> Result<usize, EntropyError> {
        let n = self.codes_in(k);
        generator.fill_codes_with(rng, &mut chunk[..n * self.length])?;
        // The default types' lengths get a copy of a known size each (a few moves instead of
        // a call to memmove per code: a quarter of the run's time for alnum8).
        match self.length {
            6 => into_lines(chunk, n, 6),
            8 => into_lines(chunk, n, 8),
            12 => into_lines(chunk, n, 12),
            64 => into_lines(chunk, n, 64),
            length => into_lines(chunk, n, length),
        }
        Ok(n * self.stride())
    }
}

/// Moves `n` codes of `length` characters, back to back at the start of `chunk`, each to its
/// line and ends the line: from the last back, so a code never lands on one not yet moved.
#[inline(always)]
fn into_lines(chunk: &mut [u8], n: usize, length: usize) {
    let stride = length + 1;
    for i in (0..n).rev() {
        chunk.copy_within(i * length..(i + 1) * length, i * stride);
        chunk[i * stride + length] = b'\n';
    }
}

/// Standard output could not take a chunk.
fn cannot_write(source: io::Error) -> CliError {
    CliError::Output {
        what: "cannot write codes",
        source,
    }
}

/// One thread: every chunk drawn, then written, in one buffer.
fn write_alone(generator: &Generator, plan: &Plan, out: &mut impl Write) -> Result<(), CliError> {
    let mut rng = CodeRng::from_os()?;
    let mut chunk = plan.buffer();
    for k in 0..plan.chunks {
        let len = plan.fill(generator, &mut rng, &mut chunk, k)?;
        out.write_all(&chunk[..len]).map_err(cannot_write)?;
    }
    out.flush().map_err(cannot_write)
}

/// A chunk a worker filled, for the writer.
struct Filled {
    /// Whose buffer it is: the writer gives it back to that worker.
    worker: usize,
    /// Bytes of lines at its start.
    len: usize,
    chunk: Chunk,
}

/// `workers` threads draw the chunks, this one writes them as they come. When the writer
/// stops (a closed pipe, an error) the channels close and every worker ends after the chunk
/// in its hands.
fn write_in_parallel(
    generator: &Generator,
    plan: &Plan,
    workers: usize,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let next = AtomicU64::new(0);
    let (to_writer, filled) = mpsc::sync_channel(workers);
    thread::scope(|scope| {
        // Owned here, so that it closes when the writer returns and no worker waits on it.
        let filled = filled;
        let mut back = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (give_back, buffers) = mpsc::sync_channel(BUFFERS_PER_WORKER);
            for _ in 0..BUFFERS_PER_WORKER {
                give_back
                    .send(plan.buffer())
                    .expect("room for every buffer");
            }
            back.push(give_back);
            let (to_writer, next) = (to_writer.clone(), &next);
            scope.spawn(move || work(worker, generator, plan, next, &buffers, &to_writer));
        }
        drop(to_writer);
        write_filled(&filled, &back, out)
    })
}

/// A worker: with each buffer it gets (back), claims the next chunk, fills it and hands it
/// to the writer, until the chunks run out or the writer is gone.
fn work(
    worker: usize,
    generator: &Generator,
    plan: &Plan,
    next: &AtomicU64,
    buffers: &Receiver<Chunk>,
    to_writer: &SyncSender<Result<Filled, EntropyError>>,
) {
    let mut rng = match CodeRng::from_os() {
        Ok(rng) => rng,
        Err(e) => {
            let _ = to_writer.send(Err(e));
            return;
        }
    };
    while let Ok(mut chunk) = buffers.recv() {
        let k = next.fetch_add(1, Ordering::Relaxed);
        if k >= plan.chunks {
            return;
        }
        let filled = plan
            .fill(generator, &mut rng, &mut chunk, k)
            .map(|len| Filled { worker, len, chunk });
        if to_writer.send(filled).is_err() {
            return;
        }
    }
}

/// The writer: writes each chunk as it comes and gives its buffer back, until every worker
/// has ended.
fn write_filled(
    filled: &Receiver<Result<Filled, EntropyError>>,
    back: &[SyncSender<Chunk>],
    out: &mut impl Write,
) -> Result<(), CliError> {
    for chunk in filled {
        let Filled { worker, len, chunk } = chunk?;
        out.write_all(&chunk[..len]).map_err(cannot_write)?;
        // A worker that has ended takes no buffer: it is dropped here, zeroed.
        let _ = back[worker].send(chunk);
    }
    out.flush().map_err(cannot_write)
}
