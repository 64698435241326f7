//! The BB-ANS loop: images in chunks of [`CHUNK_IMAGES`], each chunk one ANS stack, chunks coded
//! in parallel (so the file is the same on any thread count).

use crate::format::{File, Header};
use crate::latent::Buckets;
use crate::pixels::{cost, models};
use crate::CodecError;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use constriction::stream::model::{DefaultLeakyQuantizer, DefaultUniformModel};
use constriction::stream::stack::DefaultAnsCoder;
use constriction::stream::{Decode, Encode};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Instant;
use vaelab_vae::{Architecture, Likelihood, Model, ModelKind, Prior};

/// Images per independently coded chunk: each pays one clean start (≈ L·bits bits).
pub const CHUNK_IMAGES: usize = 1000;

/// A trained model ready to code images of `levels` grey levels.
pub struct Coder {
    model: Model,
    mass: Likelihood,
    levels: u16,
    buckets: Buckets,
    digest: [u8; 32],
}

/// What compressing cost and what it reached.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Σ over images of −log₂ p(x|z) − log₂ p(z) + log₂ q(z|x) at the coded z, under the
    /// coder's quantized models (the first image of a chunk gets no bits back): the rate of
    /// an ideal entropy coder, which the file's ANS words come within a few bits of.
    pub ideal_bits: f64,
    pub seconds: f64,
}

fn ans_error(e: impl std::fmt::Debug) -> CodecError {
    CodecError::Coder(format!("{e:?}"))
}

impl Coder {
    /// Restores the weights of `checkpoint` (the SHA-256 `digest` names it in files).
    pub fn load(
        checkpoint: &Path,
        arch: Architecture,
        levels: u16,
        digest: [u8; 32],
        bucket_bits: u8,
    ) -> Result<Self, CodecError> {
        Self::check(&arch)?;
        let tensors = candle_core::safetensors::load(checkpoint, &Device::Cpu)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        Self::new(Model::new(arch, vb)?, levels, digest, bucket_bits)
    }

    /// Codes with `model` images of `levels` grey levels, `2^bucket_bits` buckets per latent.
    pub fn new(
        model: Model,
        levels: u16,
        digest: [u8; 32],
        bucket_bits: u8,
    ) -> Result<Self, CodecError> {
        Self::check(model.arch())?;
        Ok(Self {
            mass: model.arch().likelihood.scored_on(levels),
            model,
            levels,
            buckets: Buckets::new(bucket_bits),
            digest,
        })
    }

    /// Refuses the models bits-back coding here does not serve.
    fn check(arch: &Architecture) -> Result<(), CodecError> {
        if arch.kind != ModelKind::Vae {
            return Err(CodecError::Model(
                "an autoencoder has no q(z|x) to get bits back from: compress with a VAE run"
                    .into(),
            ));
        }
        if arch.stack.sizes(arch.latent_dim).len() != 1 {
            return Err(CodecError::Model(
                "compression codes one latent layer (a run without latent_layers)".into(),
            ));
        }
        if arch.prior != Prior::Standard {
            return Err(CodecError::Model(
                "compression buckets the N(0, I) prior: a VampPrior run cannot be coded".into(),
            ));
        }
        Ok(())
    }

    fn dim(&self) -> usize {
        self.model.arch().input_dim()
    }

    fn latent(&self) -> usize {
        self.model.arch().latent_dim
    }

    /// q(z|x) of one image of levels: (μ, σ) per latent dimension. One image at a time, as the
    /// decoder must, so both sides do the same arithmetic.
    fn posterior(&self, image: &[u8]) -> Result<(Vec<f32>, Vec<f32>), CodecError> {
        let last = f32::from(self.levels - 1);
        let x: Vec<f32> = image.iter().map(|&k| f32::from(k) / last).collect();
        let q = self
            .model
            .encode(&Tensor::from_vec(x, (1, self.dim()), &Device::Cpu)?)?;
        let logvar = q
            .logvar
            .ok_or_else(|| CodecError::Model("no log σ²".into()))?;
        let mu = q.mu.flatten_all()?.to_vec1::<f32>()?;
        let sigma = logvar
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .map(|lv| (0.5 * lv).exp())
            .collect();
        Ok((mu, sigma))
    }

    /// The decoder's output row at the centres of buckets `z`.
    fn params(&self, z: &[u32], buckets: Buckets) -> Result<Vec<f32>, CodecError> {
        let z: Vec<f32> = z.iter().map(|&j| buckets.centre(j)).collect();
        let zt = Tensor::from_vec(z, (1, self.latent()), &Device::Cpu)?;
        Ok(self.model.decode(&zt)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Codes `images` (rows of `dim` levels, 0..levels) that came in IDX dimensions `idx_dims`.
    pub fn compress(&self, images: &[u8], idx_dims: Vec<u32>) -> Result<(File, Stats), CodecError> {
        let start = Instant::now();
        let d = self.dim();
        if !images.len().is_multiple_of(d) || images.iter().any(|&k| u16::from(k) >= self.levels) {
            return Err(CodecError::Mismatch(format!(
                "images must be rows of {d} pixels with levels 0..{}",
                self.levels - 1
            )));
        }
        let coded: Vec<(Vec<u32>, f64)> = images
            .chunks(CHUNK_IMAGES * d)
            .collect::<Vec<_>>()
            .par_iter()
            .map(|chunk| self.compress_chunk(chunk))
            .collect::<Result<_, _>>()?;
        let header = Header {
            model: self.digest,
            images: Sha256::digest(images).into(),
            levels: self.levels,
            bucket_bits: self.buckets.bits(),
            dim: d as u32,
            latent: self.latent() as u32,
            idx_dims,
            chunk: CHUNK_IMAGES as u32,
        };
        let ideal_bits = coded.iter().map(|c| c.1).sum();
        let chunks = coded.into_iter().map(|c| c.0).collect();
        let stats = Stats {
            ideal_bits,
            seconds: start.elapsed().as_secs_f64(),
        };
        Ok((File { header, chunks }, stats))
    }

    fn compress_chunk(&self, chunk: &[u8]) -> Result<(Vec<u32>, f64), CodecError> {
        let (d, l) = (self.dim(), self.latent());
        let quantizer = DefaultLeakyQuantizer::<f64, u32>::new(0..=self.buckets.count() - 1);
        let prior = DefaultUniformModel::new(self.buckets.count() as usize);
        let mut ans = DefaultAnsCoder::new();
        let mut ideal = 0.0;
        for (t, image) in chunk.chunks(d).enumerate() {
            let (mu, sigma) = self.posterior(image)?;
            let mut z = Vec::with_capacity(l);
            for i in 0..l {
                let q = self.buckets.posterior(mu[i], sigma[i]);
                let j = if t == 0 {
                    self.buckets.of(f64::from(mu[i]))
                } else {
                    let model = quantizer.quantize(q);
                    let j = ans.decode_symbol(model).map_err(ans_error)?;
                    ideal -= cost(model, j);
                    j
                };
                z.push(j);
            }
            let params = self.params(&z, self.buckets)?;
            let pixel_models = models(self.mass, self.levels, &params)?;
            for (j, m) in pixel_models.iter().enumerate().rev() {
                let k = usize::from(image[j]);
                ideal += cost(m, k);
                ans.encode_symbol(k, m).map_err(ans_error)?;
            }
            for &j in z.iter().rev() {
                ideal += cost(prior, j as usize);
                ans.encode_symbol(j as usize, prior).map_err(ans_error)?;
            }
        }
        Ok((ans.into_compressed().map_err(ans_error)?, ideal))
    }

    /// The images of `file` as rows of levels; refuses a file of another model or one whose
    /// decoded images fail its checksum.
    pub fn decompress(&self, file: &File) -> Result<Vec<u8>, CodecError> {
        let h = &file.header;
        if h.model != self.digest {
            return Err(CodecError::Mismatch(format!(
                "the file was coded by another model (checkpoint sha256 {}…, this run's {}…)",
                hex(&h.model[..6]),
                hex(&self.digest[..6])
            )));
        }
        if h.levels != self.levels
            || h.dim as usize != self.dim()
            || h.latent as usize != self.latent()
        {
            return Err(CodecError::Mismatch(format!(
                "the file holds {} pixels of {} levels with {} latents; this model codes {} of {} with {}",
                h.dim, h.levels, h.latent, self.dim(), self.levels, self.latent()
            )));
        }
        let n = h.count();
        let sizes: Vec<usize> = (0..file.chunks.len())
            .map(|c| (n - c * h.chunk as usize).min(h.chunk as usize))
            .collect();
        let buckets = Buckets::new(h.bucket_bits);
        let images: Vec<Vec<u8>> = file
            .chunks
            .par_iter()
            .zip(sizes.par_iter())
            .map(|(words, &m)| self.decompress_chunk(words, m, buckets))
            .collect::<Result<_, _>>()?;
        let images = images.concat();
        if <[u8; 32]>::from(Sha256::digest(&images)) != h.images {
            return Err(CodecError::Format(
                "the decoded images fail the file's checksum: a corrupt file, or one coded by a build whose arithmetic differs".into(),
            ));
        }
        Ok(images)
    }

    fn decompress_chunk(
        &self,
        words: &[u32],
        m: usize,
        buckets: Buckets,
    ) -> Result<Vec<u8>, CodecError> {
        let (d, l) = (self.dim(), self.latent());
        let corrupt = || CodecError::Format("a corrupt chunk".into());
        let quantizer = DefaultLeakyQuantizer::<f64, u32>::new(0..=buckets.count() - 1);
        let prior = DefaultUniformModel::new(buckets.count() as usize);
        let mut ans = DefaultAnsCoder::from_compressed(words.to_vec()).map_err(|_| corrupt())?;
        let mut out = vec![0u8; m * d];
        for t in (0..m).rev() {
            let z = (0..l)
                .map(|_| ans.decode_symbol(prior).map(|j| j as u32))
                .collect::<Result<Vec<_>, _>>()
                .map_err(ans_error)?;
            let params = self.params(&z, buckets)?;
            let image = &mut out[t * d..(t + 1) * d];
            for (j, m) in models(self.mass, self.levels, &params)?.iter().enumerate() {
                image[j] = ans.decode_symbol(m).map_err(ans_error)? as u8;
            }
            if t > 0 {
                let (mu, sigma) = self.posterior(image)?;
                for i in (0..l).rev() {
                    let q = buckets.posterior(mu[i], sigma[i]);
                    ans.encode_symbol(z[i], quantizer.quantize(q))
                        .map_err(ans_error)?;
                }
            }
        }
        if !ans.is_empty() {
            return Err(corrupt());
        }
        Ok(out)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
