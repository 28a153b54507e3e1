//! Weights files as the host holds them (docs/weights-format.md): 4-byte aligned storage
//! for the core's in-place parsers, and the model of either precision. Used by `export`,
//! `board`, `eval`, `quantize` and `finetune`.

use std::path::Path;

use anyhow::Result;
use microconv::format::Model;
use microconv::qformat::QModel;

/// The largest weights file (float or int8) this build reads: the parameters a parameter
/// file may hold ([`crate::params_file::MAX_PARAMS`]) and 1 MiB of headers and tables.
pub const MAX_BYTES: u64 = crate::params_file::MAX_BYTES + (1 << 20);

/// Whether `bytes` (a whole file or its first 12 bytes) start an int8 weights file
/// (version 2), as the core's [`microconv::weights::Precision::of`] reads the header.
pub fn is_int8(bytes: &[u8]) -> bool {
    microconv::weights::Precision::of(bytes) == Ok(microconv::weights::Precision::Int8)
}

/// Whether the file at `path` is an int8 weights file (false if it cannot be read).
pub fn is_int8_file(path: &Path) -> bool {
    crate::bytes::head(path, 12).is_ok_and(|b| is_int8(&b))
}

/// A weights file's model, float (version 1) or int8 (version 2).
pub enum HostModel<'a> {
    /// A float model.
    Float(Box<Model<'a>>),
    /// An int8 model.
    Int8(Box<QModel<'a>>),
}

impl<'a> HostModel<'a> {
    /// Parses `bytes` (4-byte aligned) with the reader its version calls for.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, microconv::format::FormatError> {
        if is_int8(bytes) {
            QModel::parse(bytes).map(|m| HostModel::Int8(Box::new(m)))
        } else {
            Model::parse(bytes).map(|m| HostModel::Float(Box::new(m)))
        }
    }

    /// The layers.
    pub fn arch(&self) -> microconv::Arch<'_> {
        match self {
            HostModel::Float(m) => m.arch(),
            HostModel::Int8(m) => m.arch(),
        }
    }
}

/// A weights file in 4-byte aligned storage, so that the core's parser can read the
/// parameters in place.
pub struct WeightsFile {
    words: Vec<u32>,
    len: usize,
}

impl WeightsFile {
    /// An aligned copy of `bytes` (not checked yet: see [`WeightsFile::model`]).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        WeightsFile {
            words,
            len: bytes.len(),
        }
    }

    /// Reads `path` (at most [`MAX_BYTES`]) and checks it with the reader its version calls for (float or int8).
    pub fn read_any(path: &Path) -> Result<Self> {
        let bytes = crate::bytes::read_at_most(path, MAX_BYTES, "weights file")?;
        let file = Self::from_bytes(&bytes);
        HostModel::parse(file.bytes()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(file)
    }

    /// Reads `path` and checks it with the core's parser.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = crate::bytes::read_at_most(path, MAX_BYTES, "weights file")?;
        let file = Self::from_bytes(&bytes);
        file.model()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(file)
    }

    /// The file's bytes, 4-byte aligned.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    /// The parsed model, borrowing the parameters in place.
    pub fn model(&self) -> Result<Model<'_>, microconv::format::FormatError> {
        Model::parse(&bytemuck::cast_slice(&self.words)[..self.len])
    }
}
