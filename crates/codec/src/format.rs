//! The compressed file: a header naming the model and the images, a table of independently
//! coded chunks, then each chunk's ANS words. Little-endian throughout.

use crate::CodecError;

const MAGIC: &[u8; 8] = b"VAELABBB";
const VERSION: u16 = 1;

/// What a file says about its images and the model that coded them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// SHA-256 of the checkpoint that coded the images.
    pub model: [u8; 32],
    /// SHA-256 of the images' level bytes, checked after decoding.
    pub images: [u8; 32],
    /// Grey levels per pixel (256, or 2 for binarized images).
    pub levels: u16,
    /// log₂ of the latent buckets per dimension.
    pub bucket_bits: u8,
    /// Pixels per image and latent dimensions.
    pub dim: u32,
    pub latent: u32,
    /// The IDX dimensions the images came in (first: the image count).
    pub idx_dims: Vec<u32>,
    /// Images per chunk (each chunk is its own ANS stack).
    pub chunk: u32,
}

impl Header {
    /// Images in the file.
    pub fn count(&self) -> usize {
        self.idx_dims.first().map_or(0, |&n| n as usize)
    }
}

/// The file: header, then per chunk its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub header: Header,
    pub chunks: Vec<Vec<u32>>,
}

impl File {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let h = &self.header;
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&h.model);
        out.extend_from_slice(&h.images);
        out.extend_from_slice(&h.levels.to_le_bytes());
        out.push(h.bucket_bits);
        for v in [h.dim, h.latent, h.chunk, h.idx_dims.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for d in &h.idx_dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for c in &self.chunks {
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        }
        for w in self.chunks.iter().flatten() {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Parses a file; a foreign, truncated or padded one is refused, saying which.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8)? != MAGIC {
            return Err(CodecError::Format(
                "not a vaelab compressed file (no VAELABBB header)".into(),
            ));
        }
        let version = r.u16()?;
        if version != VERSION {
            return Err(CodecError::Format(format!(
                "format version {version}; this vaelab reads version {VERSION}"
            )));
        }
        let model = r.digest()?;
        let images = r.digest()?;
        let levels = r.u16()?;
        let bucket_bits = r.take(1)?[0];
        let (dim, latent, chunk, ndims) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        if ndims > 8
            || !(2..=256).contains(&levels)
            || !(2..=16).contains(&bucket_bits)
            || chunk == 0
        {
            return Err(CodecError::Format("a corrupt header".into()));
        }
        let idx_dims = (0..ndims).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
        let n_chunks = r.u32()? as usize;
        let lens = (0..n_chunks.min(bytes.len() / 4))
            .map(|_| r.u32().map(|l| l as usize))
            .collect::<Result<Vec<_>, _>>()?;
        if lens.len() != n_chunks {
            return Err(r.truncated(4 * n_chunks));
        }
        let words: usize = lens.iter().sum();
        let rest = bytes.len() - r.at;
        if rest != 4 * words {
            return Err(CodecError::Format(format!(
                "{} bytes of coded data where the chunk table says {} ({})",
                rest,
                4 * words,
                if rest < 4 * words {
                    "truncated"
                } else {
                    "trailing bytes"
                }
            )));
        }
        let chunks = lens
            .iter()
            .map(|&l| (0..l).map(|_| r.u32()).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        let header = Header {
            model,
            images,
            levels,
            bucket_bits,
            dim,
            latent,
            idx_dims,
            chunk,
        };
        if header.count().div_ceil(chunk as usize) != n_chunks {
            return Err(CodecError::Format("a corrupt chunk table".into()));
        }
        Ok(File { header, chunks })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let s = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| self.truncated(n))?;
        self.at += n;
        Ok(s)
    }
    fn truncated(&self, n: usize) -> CodecError {
        CodecError::Format(format!(
            "truncated: {} bytes, the header needs {} more",
            self.bytes.len(),
            (self.at + n).saturating_sub(self.bytes.len())
        ))
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn digest(&mut self) -> Result<[u8; 32], CodecError> {
        let mut d = [0u8; 32];
        d.copy_from_slice(self.take(32)?);
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> File {
        File {
            header: Header {
                model: [7; 32],
                images: [9; 32],
                levels: 256,
                bucket_bits: 12,
                dim: 4,
                latent: 2,
                idx_dims: vec![3, 2, 2],
                chunk: 2,
            },
            chunks: vec![vec![1, 2, 3], vec![u32::MAX]],
        }
    }

    #[test]
    fn round_trips_and_refuses_every_cut_and_a_padded_file() {
        let bytes = file().to_bytes();
        assert_eq!(File::from_bytes(&bytes).unwrap(), file());
        for cut in 0..bytes.len() {
            assert!(File::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        let e = File::from_bytes(&padded).unwrap_err().to_string();
        assert!(e.contains("trailing"), "{e}");
        let mut foreign = bytes;
        foreign[0] = b'X';
        assert!(File::from_bytes(&foreign)
            .unwrap_err()
            .to_string()
            .contains("not a vaelab"));
    }
}
