//! Run ids, resolved TOML, table cells and plans of every shipped experiment and of hand-built
//! keys, pinned: a refactor of the run keys must not change any of them (ids name the run
//! folders of earlier sweeps; the cells are the columns of runs.parquet).

use crate::config::{load_run_file, RunKeys};
use crate::sweep_file::load_sweep_file;
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::path::Path;
use vaelab_data::{Binarize, DatasetName};
use vaelab_vae::{BodyKind, LikelihoodKind, ModelKind, ScheduleKind};

fn short(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The keys that existed when the ids were pinned; a key added later adds a column, which
/// is not a change of these.
const PINNED: &[&str] = &[
    "name",
    "dataset",
    "data_dir",
    "image_column",
    "label_column",
    "image_size",
    "model",
    "likelihood",
    "discretized",
    "sigma",
    "latent_dim",
    "architecture",
    "hidden",
    "channels",
    "beta",
    "kl_warmup_epochs",
    "free_bits",
    "epochs",
    "batch_size",
    "lr",
    "seed",
    "binarize",
    "train_subset",
    "test_subset",
    "iw_samples",
    "iw_test_n",
    "gap_test_n",
    "estep_iters",
    "schedule",
    "e_steps",
    "m_steps",
];

fn cells(k: &RunKeys) -> String {
    k.cells()
        .iter()
        .filter(|(n, _)| PINNED.contains(&n.as_str()))
        .map(|(n, c)| format!("{n}={c:?}\n"))
        .collect()
}

/// The pinned keys keep their order, and a key added since is left out of the resolved TOML
/// at its default (else every earlier run's id would change).
#[test]
fn pinned_keys_keep_their_order_and_new_keys_are_omitted_at_default() {
    let old: Vec<&str> = crate::keys::RUN_KEYS
        .iter()
        .copied()
        .filter(|k| PINNED.contains(k))
        .collect();
    assert_eq!(old, PINNED);
    for def in crate::keys::KEYS
        .iter()
        .filter(|d| !PINNED.contains(&d.name))
    {
        assert!(
            def.omitted_at_default,
            "new key `{}` needs omitted_at_default: true",
            def.name
        );
    }
}

/// One line per run of every file in experiments/, and one per plan.
fn experiments() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        if text.lines().any(|l| l.trim() == "[sweep]") {
            let plan = load_sweep_file(&f).unwrap();
            let printed = format!("{}{}\n", plan.table(), plan.summary());
            writeln!(
                out,
                "{name} plan={} runs={}",
                short(&printed),
                plan.runs.len()
            )
            .unwrap();
            for (i, r) in plan.runs.iter().enumerate() {
                assert_eq!(r.id, r.keys.run_id());
                writeln!(
                    out,
                    "{name} {i} id={} toml={} cells={}",
                    r.id,
                    short(&r.keys.to_toml()),
                    short(&cells(&r.keys))
                )
                .unwrap();
            }
        } else {
            let spec = load_run_file(&f).unwrap();
            writeln!(
                out,
                "{name} run id={} toml={} cells={}",
                spec.keys.run_id(),
                short(&spec.keys.to_toml()),
                short(&cells(&spec.keys))
            )
            .unwrap();
        }
    }
    out
}

/// Hand-built keys with every key off its default somewhere, valid or not.
fn hand_built() -> Vec<RunKeys> {
    let d = RunKeys::default;
    vec![
        d(),
        RunKeys {
            name: Some("n".into()),
            data_dir: Some("/d".into()),
            image_column: Some("img".into()),
            label_column: Some("label".into()),
            image_size: Some(32),
            gap_test_n: 7,
            estep_iters: 7,
            schedule: ScheduleKind::Alternating,
            e_steps: 2,
            m_steps: 3,
            train_subset: Some(1),
            test_subset: Some(1),
            discretized: true,
            architecture: BodyKind::Conv,
            channels: vec![16],
            ..d()
        },
        RunKeys {
            model: ModelKind::Ae,
            beta: 2.0,
            kl_warmup_epochs: 3,
            free_bits: 0.5,
            iw_samples: 50,
            iw_test_n: 10,
            gap_test_n: 500,
            estep_iters: 7,
            sigma: 0.3,
            ..d()
        },
        RunKeys {
            name: Some("cifar".into()),
            dataset: DatasetName::try_from("hub:uoft-cs/cifar10".to_string()).unwrap(),
            image_column: Some("img".into()),
            label_column: Some("label".into()),
            image_size: Some(32),
            architecture: BodyKind::Conv,
            channels: vec![32, 64, 128],
            likelihood: LikelihoodKind::DiscretizedLogistic,
            ..d()
        },
        RunKeys {
            likelihood: LikelihoodKind::Laplace,
            sigma: 0.05,
            discretized: true,
            binarize: Binarize::Static,
            ..d()
        },
        RunKeys {
            dataset: DatasetName::Mnist,
            hidden: vec![512, 256],
            lr: 3e-4,
            batch_size: 64,
            epochs: 50,
            seed: 7,
            schedule: ScheduleKind::Aggressive,
            latent_dim: 64,
            kl_warmup_epochs: 5,
            free_bits: 0.25,
            likelihood: LikelihoodKind::ContinuousBernoulli,
            ..d()
        },
        RunKeys {
            dataset: DatasetName::Idx,
            data_dir: Some("/data/idx".into()),
            likelihood: LikelihoodKind::Gaussian,
            sigma: 0.2,
            channels: vec![8],
            hidden: vec![100],
            e_steps: 2,
            binarize: Binarize::Dynamic,
            ..d()
        },
        RunKeys {
            model: ModelKind::Ae,
            likelihood: LikelihoodKind::GaussianLearned,
            discretized: true,
            schedule: ScheduleKind::Alternating,
            m_steps: 4,
            iw_test_n: 0,
            gap_test_n: 0,
            ..d()
        },
    ]
}

fn hand_built_text() -> String {
    let mut out = String::new();
    for (i, k) in hand_built().iter().enumerate() {
        // Which key is named first when several are bad follows the key order, not pinned.
        let valid = match crate::config::validate(k) {
            Ok(()) => "ok",
            Err(_) => "refused",
        };
        writeln!(
            out,
            "## keys {i}: id={} canonical={} {valid}\n{}--\n{}",
            k.run_id(),
            k.clone().canonical().run_id(),
            k.to_toml(),
            cells(k)
        )
        .unwrap();
    }
    out
}

const GOLDEN: &str = include_str!("ids.golden");

#[test]
fn ids_toml_cells_and_plans_are_unchanged() {
    let actual = format!("{}{}", experiments(), hand_built_text());
    if actual != GOLDEN {
        let out = std::env::temp_dir().join("vaelab-ids.actual");
        std::fs::write(&out, &actual).unwrap();
        let first = actual
            .lines()
            .zip(GOLDEN.lines())
            .find(|(a, g)| a != g)
            .map(|(a, g)| format!("first difference:\n  now:      {a}\n  expected: {g}"))
            .unwrap_or_else(|| "one is a prefix of the other".into());
        panic!(
            "run ids, resolved TOML, cells or plans changed ({first}); the actual text is in {}",
            out.display()
        );
    }
}
