//! The datasets runs train on, loaded the same way by a local run or sweep and by a Slurm task.

use crate::output::note;
use anyhow::Context;
use std::collections::HashMap;
use std::path::Path;
use vaelab_data::{DataSource, Dataset};

/// Loads each distinct data source once; errors say which key of which file to change.
pub fn load_data<'a>(
    sources: impl Iterator<Item = (DataSource, &'a Path)>,
) -> anyhow::Result<HashMap<DataSource, Dataset>> {
    let mut data = HashMap::new();
    for (src, file) in sources {
        if data.contains_key(&src) {
            continue;
        }
        let key = if src.data_dir.is_some() {
            "data_dir"
        } else {
            "dataset"
        };
        let d =
            vaelab_data::load(&src).with_context(|| format!("{}: key `{key}`", file.display()))?;
        note!(
            "{}: {} images of {} from {}; {}",
            d.name(),
            d.split(vaelab_data::SplitKind::Train, vaelab_data::Binarize::None)
                .len(),
            d.shape(),
            d.origin(),
            d.cache()
        );
        data.insert(src, d);
    }
    Ok(data)
}
