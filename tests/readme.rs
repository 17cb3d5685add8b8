//! The README's library example, kept compiling and true.

use secretgen::{CodeLength, Field, Generator, GeneratorConfig, GeneratorType};

#[test]
fn the_readme_library_example_runs() -> Result<(), Box<dyn std::error::Error>> {
    let config = GeneratorConfig::default_for(GeneratorType::OtpSms);
    let generator = Generator::new(&config); // compile once
    let code = generator.generate()?; // owned, with expires_at
    assert_eq!(code.expose().len(), 8);
    assert!(code.expires_at().is_some());

    let mut buf = [0u8; 8 * 1000];
    generator.fill_codes(&mut buf)?; // 1000 codes, no allocation
    assert!(buf.iter().all(u8::is_ascii_digit));

    let mut draft = config.to_draft();
    draft.length = CodeLength::new(4);
    let err = GeneratorConfig::new(&draft).unwrap_err(); // every violated rule, by field
    assert_eq!(err.fields(), [Field::EntropyBits]);
    Ok(())
}
