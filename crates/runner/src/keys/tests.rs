use super::*;
use vaelab_data::{Binarize, DatasetName};
use vaelab_vae::{BodyKind, Bound, LikelihoodKind, ModelKind, ScheduleKind};

/// Every key set off its default, so every key is written out.
fn all_set() -> RunKeys {
    RunKeys {
        name: Some("n".into()),
        dataset: DatasetName::try_from("hub:a/b".to_string()).unwrap(),
        data_dir: Some("/d".into()),
        image_column: Some("img".into()),
        label_column: Some("label".into()),
        image_size: Some(32),
        likelihood: LikelihoodKind::Gaussian,
        discretized: true,
        gap_test_n: 7,
        estep_iters: 7,
        schedule: ScheduleKind::Alternating,
        e_steps: 2,
        m_steps: 3,
        train_subset: Some(1),
        test_subset: Some(1),
        architecture: BodyKind::Conv,
        channels: vec![16],
        objective: Bound::Iwae,
        train_samples: 5,
        ..RunKeys::default()
    }
}

/// The resolved TOML writes the keys in the list's order, and leaves out only keys marked
/// `omitted_at_default` (or unset) that are at their defaults.
#[test]
fn run_keys_lists_every_field_in_order() {
    let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
    assert_eq!(names, RUN_KEYS);
    let keys = all_set();
    let written: Vec<String> = keys
        .to_toml()
        .lines()
        .filter_map(|l| l.split(" = ").next().map(str::to_string))
        .collect();
    let in_order: Vec<&str> = RUN_KEYS
        .iter()
        .copied()
        .filter(|k| written.iter().any(|w| w == k))
        .collect();
    assert_eq!(written, in_order);
    for def in KEYS.iter().filter(|d| !written.iter().any(|w| w == d.name)) {
        assert!(
            (def.omitted_at_default || def.default_value().is_none())
                && (def.value)(&keys) == def.default_value(),
            "`{}` is missing from the resolved TOML",
            def.name
        );
    }
    // all_set sets every key that existed when it was written.
    assert!(written.len() >= 31, "{written:?}");
    let back: RunKeys = toml::from_str(&keys.to_toml()).unwrap();
    assert_eq!(back, keys);
}

#[test]
fn keys_marked_omitted_are_left_out_exactly_at_their_default() {
    let default = toml::Table::try_from(RunKeys::default()).unwrap();
    for def in KEYS {
        let omitted = !default.contains_key(def.name);
        let unset = def.default_value().is_none();
        assert_eq!(omitted, def.omitted_at_default || unset, "{}", def.name);
    }
    // These came after runs existed; flipping one would change ids (see ids_test).
    for name in [
        "discretized",
        "architecture",
        "channels",
        "gap_test_n",
        "estep_iters",
        "schedule",
        "e_steps",
        "m_steps",
        "objective",
        "train_samples",
    ] {
        assert!(key(name).unwrap().omitted_at_default, "{name}");
    }
    for name in [
        "dataset",
        "model",
        "likelihood",
        "hidden",
        "beta",
        "iw_samples",
        "seed",
    ] {
        assert!(!key(name).unwrap().omitted_at_default, "{name}");
    }
}

#[test]
fn every_key_says_what_it_is_and_what_it_allows() {
    for def in KEYS {
        assert!(!def.doc_line().is_empty(), "{}", def.name);
        assert!(!def.allowed().is_empty(), "{} allows nothing?", def.name);
        assert!(!def.doc_line().contains("  "), "{}", def.doc_line());
    }
    assert_eq!(
        key("likelihood").unwrap().allowed(),
        "\"bernoulli\" | \"gaussian\" | \"gaussian-learned\" | \"continuous-bernoulli\" | \"laplace\" | \"discretized-logistic\""
    );
    assert_eq!(
        key("latent_dim").unwrap().allowed(),
        "an integer from 1 to 1024"
    );
}

/// The names come from serde and agree with the `as_str` of the crates that own the enums.
#[test]
fn enum_names_come_from_serde() {
    assert_eq!(names::<ModelKind>(), ["vae", "ae"]);
    assert_eq!(names::<BodyKind>(), ["mlp", "conv"]);
    assert_eq!(
        names::<ScheduleKind>(),
        ["joint", "alternating", "aggressive"]
    );
    assert_eq!(names::<Binarize>(), ["none", "static", "dynamic"]);
    assert_eq!(names::<Bound>(), ["elbo", "iwae"]);
    assert!(names::<DatasetName>().is_empty() && names::<usize>().is_empty());
    for n in names::<LikelihoodKind>() {
        let kind: LikelihoodKind = toml::Value::String(n.to_string()).try_into().unwrap();
        assert_eq!(kind.as_str(), *n);
        assert_eq!(name_of(&kind), *n);
    }
    assert_eq!(name_of(&ModelKind::Ae), ModelKind::Ae.as_str());
    let hub = DatasetName::try_from("hub:uoft-cs/cifar10".to_string()).unwrap();
    assert_eq!(name_of(&hub), hub.to_string());
}

/// A key's cell has its type's column whether set, unset or unused.
#[test]
fn cells_follow_the_types_and_null_the_unused_keys() {
    let kind = |c: &Cell| std::mem::discriminant(c);
    let set = all_set().cells();
    let default = RunKeys::default().cells();
    let ae = RunKeys {
        model: ModelKind::Ae,
        ..RunKeys::default()
    }
    .cells();
    for ((a, b), c) in set.iter().zip(&default).zip(&ae) {
        assert_eq!((&a.0, kind(&a.1)), (&b.0, kind(&b.1)));
        assert_eq!(kind(&a.1), kind(&c.1));
    }
    let cell =
        |cells: &[(String, Cell)], k: &str| cells.iter().find(|c| c.0 == k).unwrap().1.clone();
    assert_eq!(cell(&set, "channels"), Cell::Str(Some("16".into())));
    assert_eq!(cell(&set, "hidden"), Cell::Str(None), "conv: hidden unused");
    assert_eq!(cell(&set, "discretized"), Cell::Str(Some("true".into())));
    assert_eq!(cell(&default, "image_size"), Cell::Int(None));
    assert_eq!(cell(&ae, "beta"), Cell::Float(None));
    assert_eq!(cell(&ae, "latent_dim"), Cell::Int(Some(20)));
}

/// Every key `uses` calls meaningless is reset, whether it is written out or left out of the
/// resolved TOML at its default; the keys a run reads are kept.
#[test]
fn canonical_resets_exactly_the_unused_keys() {
    let ae = |gap_test_n, beta| RunKeys {
        model: ModelKind::Ae,
        gap_test_n,
        estep_iters: 7,
        beta,
        ..RunKeys::default()
    };
    assert_eq!(ae(500, 2.0).canonical(), ae(1000, 1.0).canonical());
    assert_eq!(
        ae(500, 2.0).canonical(),
        RunKeys {
            model: ModelKind::Ae,
            ..RunKeys::default()
        }
    );
    let conv = RunKeys {
        architecture: BodyKind::Conv,
        hidden: vec![7],
        channels: vec![8, 16],
        schedule: ScheduleKind::Alternating,
        e_steps: 3,
        gap_test_n: 500,
        ..RunKeys::default()
    };
    let c = conv.clone().canonical();
    assert_eq!(c.hidden, RunKeys::default().hidden);
    assert_eq!(
        (c.channels, c.e_steps, c.gap_test_n),
        (conv.channels.clone(), 3, 500)
    );
    // Resetting a key a run does not read never changes which keys it reads, so the order
    // of the resets does not matter.
    let reads = |k: &RunKeys| KEYS.iter().map(|d| (d.uses)(k)).collect::<Vec<_>>();
    for k in [all_set(), ae(500, 2.0), conv, RunKeys::default()] {
        for def in KEYS.iter().filter(|d| !(d.uses)(&k)) {
            let mut reset = k.clone();
            (def.reset)(&mut reset);
            assert_eq!(reads(&reset), reads(&k), "resetting {}", def.name);
        }
    }
}

/// Each check refuses with the key's own name, value and allowed text, in the list's order.
#[test]
fn validate_names_the_key_its_value_and_what_is_allowed() {
    assert_eq!(validate(&RunKeys::default()), Ok(()));
    let bad = RunKeys {
        latent_dim: 0,
        train_subset: Some(0),
        ..RunKeys::default()
    };
    assert_eq!(
        validate(&bad),
        Err(("latent_dim", "0".into(), "an integer from 1 to 1024".into()))
    );
    let e = validate(&RunKeys {
        latent_dim: 20,
        ..bad
    })
    .unwrap_err();
    assert_eq!((e.0, e.1.as_str()), ("train_subset", "0"), "{e:?}");
    let e = validate(&RunKeys {
        dataset: DatasetName::Idx,
        ..RunKeys::default()
    })
    .unwrap_err();
    assert_eq!((e.0, e.1.as_str()), ("data_dir", "(missing)"));
    let e = validate(&RunKeys {
        image_column: Some("img".into()),
        ..RunKeys::default()
    })
    .unwrap_err();
    assert_eq!(e.0, "image_column");
    assert!(e.2.contains("here \"fashion-mnist\""), "{e:?}");
}

#[test]
fn reference_lists_every_key_with_default_and_allowed_values() {
    let text = reference();
    for def in KEYS {
        let head = text
            .lines()
            .find(|l| l.starts_with(&format!("{} ", def.name)))
            .unwrap_or_else(|| panic!("{} missing from:\n{text}", def.name));
        match def.default_value() {
            Some(v) => assert_eq!(head, format!("{} = {v}", def.name)),
            None => assert!(head.ends_with("(unset by default)"), "{head}"),
        }
        assert!(text.contains(&format!("allowed: {}", def.allowed())));
    }
    assert!(text.contains("latent_dim = 20\n    The size of the latent code z.\n    allowed: an integer from 1 to 1024\n"), "{text}");
}

/// The README's Run files block documents exactly the keys, in order, with their defaults and,
/// for an enum key, every value it takes.
#[test]
fn readme_documents_every_key_with_its_default() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme
        .split("\n## Run files\n")
        .nth(1)
        .expect("README has a Run files section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section opens with a toml block");
    let mut documented = Vec::new();
    for line in block.lines() {
        // `# key = example` documents a key that is left out by default.
        let setting = line.strip_prefix("# ").unwrap_or(line);
        let Ok(table) = setting.parse::<toml::Table>() else {
            panic!("README Run files: not a `key = value` line: {line}");
        };
        let (name, value) = table.iter().next().expect("one key per line");
        let def = key(name)
            .unwrap_or_else(|| panic!("README documents `{name}`, which is not a run key"));
        if let Some(default) = def.default_value() {
            assert_eq!(*value, default, "README: default of `{name}`");
        }
        for choice in (def.choices)() {
            assert!(
                line.contains(&format!("{choice:?}")),
                "README: `{name}` does not list {choice:?}: {line}"
            );
        }
        documented.push(def.name);
    }
    assert_eq!(
        documented, RUN_KEYS,
        "README Run files: keys missing or out of order"
    );
}

/// The IWAE objective and k draws refuse what they cannot mean, naming the key and why.
#[test]
fn k_sample_objectives_refuse_what_means_nothing() {
    let refused = |k: RunKeys| validate(&k).unwrap_err();
    let iwae = RunKeys {
        objective: Bound::Iwae,
        train_samples: 5,
        ..RunKeys::default()
    };
    assert_eq!(validate(&iwae), Ok(()));
    let e = refused(RunKeys {
        train_samples: 0,
        ..RunKeys::default()
    });
    assert_eq!((e.0, e.1.as_str()), ("train_samples", "0"));
    let e = refused(RunKeys {
        model: ModelKind::Ae,
        ..iwae.clone()
    });
    assert_eq!(e.0, "objective");
    assert!(e.2.contains("model = \"ae\""), "{e:?}");
    let e = refused(RunKeys {
        model: ModelKind::Ae,
        train_samples: 5,
        ..RunKeys::default()
    });
    assert_eq!((e.0, e.1.as_str()), ("train_samples", "5"));
    let e = refused(RunKeys {
        beta: 2.0,
        free_bits: 0.5,
        ..iwae.clone()
    });
    assert_eq!(e.0, "objective");
    assert!(e.2.contains("beta, free_bits set"), "{e:?}");
    // At one draw the IWAE bound is the ELBO: one model, one run id.
    let one = |objective| {
        RunKeys {
            objective,
            ..RunKeys::default()
        }
        .canonical()
        .run_id()
    };
    assert_eq!(one(Bound::Iwae), one(Bound::Elbo));
    assert_eq!(one(Bound::Elbo), RunKeys::default().run_id());
    assert_ne!(
        iwae.run_id(),
        RunKeys {
            train_samples: 5,
            ..RunKeys::default()
        }
        .run_id()
    );
    // The k-sample ELBO keeps β, warm-up and free bits.
    assert_eq!(
        validate(&RunKeys {
            beta: 2.0,
            kl_warmup_epochs: 3,
            free_bits: 0.5,
            train_samples: 5,
            ..RunKeys::default()
        }),
        Ok(())
    );
}

/// One latent layer written as a list is the one-layer model (its id included); two layers
/// make `latent_dim` meaningless and are refused for the AE; a size of 0 is refused.
#[test]
fn latent_layers_of_one_size_are_latent_dim_and_bad_sizes_are_refused() {
    let listed = RunKeys {
        latent_layers: vec![32],
        ..RunKeys::default()
    };
    let plain = RunKeys {
        latent_dim: 32,
        ..RunKeys::default()
    };
    assert_eq!(
        listed.clone().canonical().run_id(),
        plain.clone().canonical().run_id()
    );
    assert_eq!(listed.train_config(), plain.train_config());
    let two = RunKeys {
        latent_layers: vec![100, 50],
        latent_dim: 7,
        ..RunKeys::default()
    };
    let c = two.clone().canonical();
    assert_eq!(
        c.latent_dim,
        RunKeys::default().latent_dim,
        "latent_dim is not read"
    );
    let cfg = two.train_config();
    assert_eq!(
        (cfg.latent_dim, cfg.stack.above.clone(), cfg.latent_width()),
        (100, vec![50], 150)
    );
    assert_eq!(cfg.stack.hidden, vec![100, 100]);
    let e = validate(&RunKeys {
        latent_layers: vec![100, 0],
        ..RunKeys::default()
    })
    .unwrap_err();
    assert_eq!((e.0, e.1.as_str()), ("latent_layers", "[100, 0]"), "{e:?}");
    let e = validate(&RunKeys {
        model: ModelKind::Ae,
        ..two
    })
    .unwrap_err();
    assert!(
        e.0 == "latent_layers" && e.2.contains("model = \"ae\""),
        "{e:?}"
    );
}

/// `estep_tol`'s doc and allowed text name the E-step's check interval, which lives in
/// `estep::CHECK_EVERY`: they must say the same number.
#[test]
fn estep_tol_text_names_the_check_interval() {
    let key = KEYS.iter().find(|k| k.name == "estep_tol").unwrap();
    let steps = format!("{} steps", vaelab_vae::eval::estep::CHECK_EVERY);
    assert!(key.doc.contains(&steps), "doc: {}", key.doc);
    assert!(key.allowed.contains(&steps), "allowed: {}", key.allowed);
}
