//! Reads SQLite's write-ahead log (`secretgen.db-wal`) before SQLite does, to refuse one that
//! SQLite would silently ignore in part or in whole.
//!
//! SQLite reads a WAL up to its first frame that fails its checksum and treats the rest as
//! never written; a WAL whose header is damaged is ignored whole. That is right for a write
//! torn by a crash (the torn transaction was never acknowledged), and wrong for damage in the
//! middle of committed frames: the committed transactions after the damage would be rolled
//! back without a word. This module tells the two apart. A frame that fails its checksum
//! followed by a frame that is intact when chained from the failed frame's stored checksum
//! means the failed frame was written whole and damaged afterwards: the log is refused. A
//! failed frame with nothing intact after it is a torn tail, which SQLite drops as it should.
//!
//! The format is SQLite's (<https://www.sqlite.org/fileformat2.html#walformat>): a 32-byte
//! header, then frames of a 24-byte header and one page, with checksums that run through the
//! whole log.

use std::path::Path;

const MAGIC_LITTLE: u32 = 0x377f_0682;
const MAGIC_BIG: u32 = 0x377f_0683;
const VERSION: u32 = 3_007_000;
const HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

/// Why a WAL cannot be trusted.
pub(crate) type WalDamage = String;

/// Checks the WAL at `path`: `Ok` when it is absent, empty, or holds nothing that SQLite would
/// drop but a torn last write; otherwise what is wrong, in words.
pub(crate) fn check_file(path: &Path) -> Result<(), WalDamage> {
    match std::fs::read(path) {
        Ok(bytes) => check(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("it cannot be read: {e}")),
    }
}

/// Checks the bytes of a WAL; see [`check_file`].
pub(crate) fn check(wal: &[u8]) -> Result<(), WalDamage> {
    if wal.is_empty() {
        return Ok(());
    }
    if wal.len() < HEADER {
        return Err(format!(
            "it is {} bytes long, shorter than its 32-byte header",
            wal.len()
        ));
    }
    let magic = be32(wal, 0);
    let big_endian = match magic {
        MAGIC_LITTLE => false,
        MAGIC_BIG => true,
        _ => return Err("its header does not start with the WAL magic number".to_owned()),
    };
    if be32(wal, 4) != VERSION {
        return Err("its header names an unknown WAL format version".to_owned());
    }
    let raw_size = be32(wal, 8);
    let page_size = ((raw_size & 0xfe00) + ((raw_size & 1) << 16)) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!(
            "its header gives an impossible page size ({raw_size})"
        ));
    }
    let salt = (be32(wal, 16), be32(wal, 20));
    let stored = (be32(wal, 24), be32(wal, 28));
    if checksum((0, 0), &wal[..24], big_endian) != stored {
        return Err("its header fails its checksum".to_owned());
    }
    let frame = FRAME_HEADER + page_size;
    let frames: Vec<&[u8]> = wal[HEADER..].chunks_exact(frame).collect();
    let mut previous = stored;
    for (i, f) in frames.iter().enumerate() {
        if (be32(f, 8), be32(f, 12)) != salt {
            // A frame of an earlier generation of the log: the log ends here.
            return Ok(());
        }
        if frame_is_valid(f, previous, big_endian) {
            previous = (be32(f, 16), be32(f, 20));
            continue;
        }
        // SQLite stops reading here. Is anything intact after this frame?
        for j in i + 1..frames.len() {
            let before = (be32(frames[j - 1], 16), be32(frames[j - 1], 20));
            let next = frames[j];
            if (be32(next, 8), be32(next, 12)) == salt && frame_is_valid(next, before, big_endian) {
                return Err(format!(
                    "frame {} of {} is damaged while later frames are intact: SQLite would \
                     drop the committed changes after it",
                    i + 1,
                    frames.len()
                ));
            }
        }
        return Ok(());
    }
    Ok(())
}

/// Whether `frame` carries a page and its checksum, chained from `previous`, holds.
fn frame_is_valid(frame: &[u8], previous: (u32, u32), big_endian: bool) -> bool {
    let sum = checksum(previous, &frame[..8], big_endian);
    let sum = checksum(sum, &frame[FRAME_HEADER..], big_endian);
    be32(frame, 0) != 0 && sum == (be32(frame, 16), be32(frame, 20))
}

/// SQLite's WAL checksum of `data` (a multiple of 8 bytes) continued from `start`.
fn checksum(start: (u32, u32), data: &[u8], big_endian: bool) -> (u32, u32) {
    let word = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let (mut s1, mut s2) = start;
    for pair in data.chunks_exact(8) {
        s1 = s1.wrapping_add(word(&pair[..4])).wrapping_add(s2);
        s2 = s2.wrapping_add(word(&pair[4..])).wrapping_add(s1);
    }
    (s1, s2)
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use rusqlite::config::DbConfig;

    /// A real WAL of three committed transactions (pages of 4096 bytes), never checkpointed.
    fn three_commits() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (x TEXT)").unwrap();
        for i in 0..3 {
            conn.execute("INSERT INTO t VALUES (?1)", [format!("row {i}")])
                .unwrap();
        }
        let wal = std::fs::read(dir.path().join("w.db-wal")).unwrap();
        drop(conn);
        wal
    }

    fn frame_start(i: usize) -> usize {
        HEADER + i * (FRAME_HEADER + 4096)
    }

    #[test]
    fn a_real_log_passes_whole_and_torn_at_any_point() {
        let wal = three_commits();
        let frames = (wal.len() - HEADER) / (FRAME_HEADER + 4096);
        assert!(frames >= 4, "{frames} frames");
        assert_eq!(check(&wal), Ok(()));
        assert_eq!(check(&[]), Ok(()));
        // A crash can cut the log anywhere after its header.
        for cut in [
            HEADER,
            frame_start(1) + 100,
            frame_start(frames - 1) + 24,
            wal.len() - 1,
        ] {
            assert_eq!(check(&wal[..cut]), Ok(()), "cut at {cut}");
        }
    }

    #[test]
    fn damage_before_intact_frames_is_refused() {
        let wal = three_commits();
        for frame in [0, 1] {
            let mut damaged = wal.clone();
            damaged[frame_start(frame) + FRAME_HEADER + 2000] ^= 0x40;
            let err = check(&damaged).unwrap_err();
            assert!(err.contains(&format!("frame {} of", frame + 1)), "{err}");
        }
    }

    #[test]
    fn damage_in_the_last_frame_reads_as_a_torn_write() {
        let wal = three_commits();
        let mut damaged = wal.clone();
        let last = wal.len() - 10;
        damaged[last] ^= 0x01;
        assert_eq!(check(&damaged), Ok(()));
    }

    #[test]
    fn a_damaged_header_is_refused() {
        let wal = three_commits();
        let mut damaged = wal.clone();
        damaged[17] ^= 0x01; // the first salt: the header's checksum no longer holds
        assert!(check(&damaged).unwrap_err().contains("checksum"));
        assert!(check(&[0u8; 4096]).unwrap_err().contains("magic"));
        assert!(check(&wal[..20]).unwrap_err().contains("shorter"));
    }
}
