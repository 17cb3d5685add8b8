//! Command-line parsing and the `generate` command.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use secretgen::{CodeRng, ConfigDraft, Generator, GeneratorConfig, GeneratorType};
use zeroize::Zeroize;

/// Cryptographically random, exactly uniform secrets and one-time codes.
#[derive(Debug, Parser)]
#[command(name = "secretgen", version, about, arg_required_else_help = false)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print codes of one generator type, one per line.
    Generate(GenerateArgs),
}

/// `secretgen generate <TYPE>`: ZITADEL's default configuration of the type, changed for this
/// run by the flags. Giving any class flag replaces the type's classes with those given.
#[derive(Debug, Args)]
struct GenerateArgs {
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
}

/// Parses the command line and runs it; every failure is one line on standard error.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&clap_reason(&e)),
    };
    let result = match cli.command {
        Command::Generate(args) => generate(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => fail(&reason),
    }
}

fn fail(reason: &str) -> ExitCode {
    eprintln!("secretgen: {reason}");
    ExitCode::from(2)
}

/// Clap's message up to its usage part, on one line, without its `error: ` prefix.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let reason: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let reason = reason.join(" ");
    format!(
        "{} (see secretgen --help)",
        reason.strip_prefix("error: ").unwrap_or(&reason)
    )
}

/// The configuration for this run: the default of the type, with the flags applied.
fn configuration(args: &GenerateArgs) -> Result<GeneratorConfig, String> {
    let generator_type: GeneratorType = args.generator_type.parse().map_err(|e| format!("{e}"))?;
    let mut draft: ConfigDraft = GeneratorConfig::default_for(generator_type).to_draft();
    if let Some(length) = args.length {
        draft.length = length;
    }
    if args.lower || args.upper || args.digits || args.symbols {
        draft.include_lower_letters = args.lower;
        draft.include_upper_letters = args.upper;
        draft.include_digits = args.digits;
        draft.include_symbols = args.symbols;
    }
    draft.exclude_ambiguous |= args.exclude_ambiguous;
    draft.require_each_class |= args.require_each_class;
    GeneratorConfig::new(&draft).map_err(|e| e.to_string())
}

/// Output is written in chunks of about this many bytes.
const CHUNK_BYTES: usize = 64 * 1024;

fn generate(args: &GenerateArgs) -> Result<(), String> {
    let config = configuration(args)?;
    let generator = Generator::new(&config);
    let mut rng = CodeRng::from_os().map_err(|e| e.to_string())?;
    let length = generator.length();
    let stride = length + 1;
    let per_chunk = (CHUNK_BYTES / stride).max(1);
    let mut chunk = vec![0u8; per_chunk * stride];
    let mut out = io::stdout().lock();
    let mut left = args.count;
    let result = loop {
        if left == 0 {
            break out.flush();
        }
        let n = left.min(per_chunk as u64) as usize;
        let bytes = &mut chunk[..n * stride];
        for line in bytes.chunks_exact_mut(stride) {
            if let Err(e) = generator.fill_with(&mut rng, &mut line[..length]) {
                chunk.zeroize();
                return Err(e.to_string());
            }
            line[length] = b'\n';
        }
        if let Err(e) = out.write_all(bytes) {
            break Err(e);
        }
        left -= n as u64;
    };
    chunk.zeroize();
    match result {
        Ok(()) => Ok(()),
        // The reader has all it wanted (`| head`): not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot write codes: {e}")),
    }
}
