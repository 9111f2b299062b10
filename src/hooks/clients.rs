//! The client modules job commands import as `maand`: Python (`clients/maand.py`, standard
//! library only) and Bun/TypeScript (`clients/maand.ts`). They are compiled into the binary
//! and written next to the script for every run, so a script always talks to the API of the
//! maand that runs it. This module only holds and writes them; it never runs anything.

use super::HookError;
use std::path::Path;

/// The Python client, `import maand`.
pub const PYTHON_CLIENT: &str = include_str!("clients/maand.py");
/// The Bun/TypeScript client, `import ... from "maand"` or `"./maand"`.
pub const TYPESCRIPT_CLIENT: &str = include_str!("clients/maand.ts");

/// File names the clients take next to the script.
pub(crate) const CLIENT_FILES: [(&str, &str); 2] =
    [("maand.py", PYTHON_CLIENT), ("maand.ts", TYPESCRIPT_CLIENT)];

/// Writes the clients into `modules` (the staged `_modules/`) and the TypeScript client as
/// the package `maand` under `packages` (a directory put on `NODE_PATH`).
pub(crate) fn write_clients(modules: &Path, packages: &Path) -> Result<(), HookError> {
    for (name, text) in CLIENT_FILES {
        write(&modules.join(name), text)?;
    }
    let package = packages.join("maand");
    create_dir(&package)?;
    write(
        &package.join("package.json"),
        r#"{"name": "maand", "private": true, "main": "index.ts"}"#,
    )?;
    write(&package.join("index.ts"), TYPESCRIPT_CLIENT)
}

pub(crate) fn create_dir(path: &Path) -> Result<(), HookError> {
    std::fs::create_dir_all(path).map_err(|source| HookError::Stage {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), HookError> {
    std::fs::write(path, text).map_err(|source| HookError::Stage {
        path: path.to_path_buf(),
        source,
    })
}
