//! A key's table cell follows from its type: integers are `Int`, numbers `Float`, names and
//! flags `Str`, lists `"a,b"` text; an unset optional key is a null of its type.

use std::path::PathBuf;
use vaelab_track::Cell;

/// The typed table cell of a key's value.
pub trait ToCell {
    fn cell(&self) -> Cell;
    /// A null of this type's column.
    fn null() -> Cell;
}

impl ToCell for usize {
    fn cell(&self) -> Cell {
        Cell::Int(Some(*self as i64))
    }
    fn null() -> Cell {
        Cell::Int(None)
    }
}

impl ToCell for u64 {
    fn cell(&self) -> Cell {
        Cell::Int(Some(*self as i64))
    }
    fn null() -> Cell {
        Cell::Int(None)
    }
}

impl ToCell for f64 {
    fn cell(&self) -> Cell {
        Cell::Float(Some(*self))
    }
    fn null() -> Cell {
        Cell::Float(None)
    }
}

/// `"true"` or `"false"`.
impl ToCell for bool {
    fn cell(&self) -> Cell {
        Cell::Str(Some(self.to_string()))
    }
    fn null() -> Cell {
        Cell::Str(None)
    }
}

impl ToCell for String {
    fn cell(&self) -> Cell {
        Cell::Str(Some(self.clone()))
    }
    fn null() -> Cell {
        Cell::Str(None)
    }
}

impl ToCell for PathBuf {
    fn cell(&self) -> Cell {
        Cell::Str(Some(self.display().to_string()))
    }
    fn null() -> Cell {
        Cell::Str(None)
    }
}

/// Layer widths as `"512,256"`.
impl ToCell for Vec<usize> {
    fn cell(&self) -> Cell {
        let text: Vec<String> = self.iter().map(|v| v.to_string()).collect();
        Cell::Str(Some(text.join(",")))
    }
    fn null() -> Cell {
        Cell::Str(None)
    }
}

impl<T: ToCell> ToCell for Option<T> {
    fn cell(&self) -> Cell {
        self.as_ref().map_or_else(T::null, T::cell)
    }
    fn null() -> Cell {
        T::null()
    }
}

/// Enum keys (and the dataset) as the names config files write.
macro_rules! named {
    ($($t:ty),*) => {$(
        impl ToCell for $t {
            fn cell(&self) -> Cell {
                Cell::Str(Some(super::name_of(self)))
            }
            fn null() -> Cell {
                Cell::Str(None)
            }
        }
    )*};
}

named!(
    vaelab_data::DatasetName,
    vaelab_data::Binarize,
    vaelab_vae::ModelKind,
    vaelab_vae::LikelihoodKind,
    vaelab_vae::BodyKind,
    vaelab_vae::ScheduleKind,
    vaelab_vae::Bound,
    vaelab_vae::PriorKind
);
