//! Training checkpoints: everything `train --resume` needs to continue a run as if it had
//! never stopped (parameters, optimizer moments and step count, the sampler's RNG state
//! and epoch order, the run's configuration), written atomically.
//!
//! File layout, little-endian: `b"MCCKPT\0\0"`, `u32` version (1), `u32` header length,
//! the header (JSON, [`Header`]), then `params` `f32`s, `state` `f32`s (Adam's `m` then
//! `v`), `order` `u32`s (the epoch's sample order), and a `u32` CRC-32 (IEEE) of
//! everything before it. A file whose checksum does not match is refused, never used.

#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::bytes::{write_atomic, write_atomic_with, Reader};
use crate::config::TrainConfig;

const MAGIC: &[u8; 8] = b"MCCKPT\0\0";
const VERSION: u32 = 1;

/// The largest checkpoint this build reads: the largest built-in network's parameters
/// and Adam's two moments, a sample order of up to 64 M training images, and a 1 MiB
/// header. A larger file is refused before it is read.
pub const MAX_BYTES: u64 =
    (1 << 20) + 12 * crate::params_file::MAX_PARAMS as u64 + 4 * (64 << 20) + 64;

/// The run's configuration and scalar state, stored as JSON so that a user can read it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The run's configuration (its fields stand at the top level of the JSON, as
    /// `arch`, `loss`, `init`, `lr`, `schedule`, `batch`, `steps`, `seed`, `threads`,
    /// `holdout`, `augment`).
    #[serde(flatten)]
    pub config: TrainConfig,
    /// The next step to run (steps `0..step` are done).
    pub step: usize,
    /// The sampler's RNG state.
    pub rng: u64,
    /// Position in `order` of the next sample.
    pub pos: usize,
    /// Adam's step count.
    pub adam_t: u32,
    /// Training seconds so far.
    pub seconds: f64,
    /// Sum of the per-sample losses since the last metrics row, and their count.
    pub window: (f64, usize),
    /// Where the run saves its parameters (an absolute path; the checkpoint, metrics and
    /// curves are beside it), so that a resumed run writes where it wrote. Absent in
    /// checkpoints of earlier builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<std::path::PathBuf>,
    /// Training images held out for validation (`train --validation`,
    /// [`crate::train::RunOptions::validation`]). Absent (0) in checkpoints of earlier
    /// builds and of runs without one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub validation: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A whole checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Configuration and scalar state.
    pub header: Header,
    /// Parameters.
    pub params: Vec<f32>,
    /// Optimizer state.
    pub state: Vec<f32>,
    /// The current epoch's sample order.
    pub order: Vec<u32>,
}

impl Checkpoint {
    /// The training configuration the checkpoint was written by, logging every
    /// `log_every` steps.
    pub fn config(&self, log_every: usize) -> TrainConfig {
        TrainConfig {
            log_every,
            ..self.header.config.clone()
        }
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let header = serde_json::to_vec(&self.header)?;
        let mut b = Vec::with_capacity(
            24 + header.len() + 4 * (self.params.len() + self.state.len() + self.order.len()),
        );
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        b.extend_from_slice(&header);
        for v in [&self.params, &self.state] {
            b.extend_from_slice(&(v.len() as u64).to_le_bytes());
            v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        }
        b.extend_from_slice(&(self.order.len() as u64).to_le_bytes());
        self.order
            .iter()
            .for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        Ok(b)
    }

    /// Parses a checkpoint; `what` names the file in errors.
    pub fn from_bytes(b: &[u8], what: &str) -> Result<Self> {
        if b.len() < 20 || !b.starts_with(MAGIC) {
            bail!("{what}: not a microconv checkpoint (bad magic or too short)");
        }
        let body = crate::bytes::check_crc(b, what)
            .map_err(|e| anyhow::anyhow!("{e}; use an older checkpoint or start again"))?;
        let mut r = Reader::new(body, MAGIC.len(), what);
        let version = r.u32()?;
        if version != VERSION {
            bail!("{what}: checkpoint version {version}, this build reads version {VERSION}");
        }
        let hlen = r.u32()? as usize;
        let header: Header = serde_json::from_slice(r.take(hlen)?)
            .with_context(|| format!("{what}: unreadable checkpoint header"))?;
        // JSON numbers beyond f32's range read as infinity; `train` never writes one.
        if !(header.config.lr.is_finite() && header.config.lr > 0.0) {
            bail!(
                "{what}: the checkpoint's learning rate {} is not a positive number",
                header.config.lr
            );
        }
        let n = r.count(4)?;
        let params = r.f32s(n)?;
        let n = r.count(4)?;
        let state = r.f32s(n)?;
        let n = r.count(4)?;
        let order = r.u32s(n)?;
        if r.remaining() != 0 {
            bail!("{what}: {} unexpected bytes at the end", r.remaining());
        }
        Ok(Checkpoint {
            header,
            params,
            state,
            order,
        })
    }

    /// Writes the checkpoint atomically (see [`write_atomic`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    /// [`save`](Self::save), pausing halfway through writing the temporary file: lets
    /// the crash-safety test kill the process in the middle of a write.
    pub fn save_slowly(&self, path: &Path, pause: std::time::Duration) -> Result<()> {
        write_atomic_with(path, &self.to_bytes()?, Some(pause))
    }

    /// Reads and checks a checkpoint file (at most [`MAX_BYTES`]).
    pub fn load(path: &Path) -> Result<Self> {
        let b = crate::bytes::read_at_most(path, MAX_BYTES, "checkpoint")?;
        Self::from_bytes(&b, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn sample() -> Checkpoint {
        Checkpoint {
            header: Header {
                config: TrainConfig {
                    arch: crate::config::ArchName::Small.into(),
                    loss: crate::config::LossName::Fused,
                    init: crate::config::InitName::He,
                    lr: 2e-3,
                    schedule: crate::config::Schedule::Cosine,
                    batch: 8,
                    steps: 100,
                    seed: 7,
                    threads: 2,
                    holdout: 0,
                    augment: true,
                    log_every: 100,
                },
                step: 40,
                rng: 0xdead_beef,
                pos: 3,
                adam_t: 40,
                seconds: 1.5,
                window: (0.5, 3),
                out: None,
                validation: 0,
            },
            params: vec![1.0, -2.5, f32::MIN_POSITIVE],
            state: vec![0.25; 6],
            order: vec![2, 0, 1],
        }
    }

    #[test]
    fn round_trip_and_every_corruption_is_refused() {
        let c = sample();
        let b = c.to_bytes().unwrap();
        assert_eq!(Checkpoint::from_bytes(&b, "c").unwrap(), c);
        for cut in 0..b.len() {
            assert!(Checkpoint::from_bytes(&b[..cut], "c").is_err(), "cut {cut}");
        }
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            let e = Checkpoint::from_bytes(&bad, "c").unwrap_err().to_string();
            assert!(e.starts_with("c: "), "{e}");
        }
        // A header no run writes: a learning rate beyond f32's range (it read as
        // infinity, and the checkpoint then wrote itself back unreadable).
        let json = serde_json::to_string(&c.header).unwrap();
        let odd = json.replace("\"lr\":0.002", "\"lr\":1e39");
        assert_ne!(json, odd);
        let mut bad = b[..12].to_vec();
        bad.extend((odd.len() as u32).to_le_bytes());
        bad.extend(odd.as_bytes());
        bad.extend(&b[16 + json.len()..b.len() - 4]);
        bad.extend(crc32fast::hash(&bad).to_le_bytes());
        let e = Checkpoint::from_bytes(&bad, "c").unwrap_err().to_string();
        assert_eq!(
            e,
            "c: the checkpoint's learning rate inf is not a positive number"
        );
        let dir = std::env::temp_dir().join(format!("mc-ckpt-{}", std::process::id()));
        let path = dir.join("run.ckpt");
        c.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), c);
        assert!(!dir.join("run.ckpt.tmp").exists());
        fs::remove_dir_all(dir).unwrap();
    }
}
