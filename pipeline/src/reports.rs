//! Where `recgpt eval` writes its reports under the data home (`eval/`), and which is the
//! newest: the command line writes them, `recgpt serve` reads them for `GET /v1/eval`.

use std::path::{Path, PathBuf};

/// Prefix of the retrieval evaluation's reports (`eval-SPLIT.json`).
pub const RETRIEVAL: &str = "eval-";
/// Prefix of the LLM quality loop's reports (`llm-SPLIT-….json`).
pub const LLM: &str = "llm-";

/// The folder of every report.
pub fn dir(home: &Path) -> PathBuf {
    home.join("eval")
}

/// The retrieval evaluation of `split`.
pub fn retrieval(home: &Path, split: &str) -> PathBuf {
    dir(home).join(format!("{RETRIEVAL}{split}.json"))
}

/// The Recall@K chart of the retrieval evaluation of `split`.
pub fn recall_chart(home: &Path, split: &str) -> PathBuf {
    dir(home).join(format!("recall-{split}.svg"))
}

/// The most recently written `PREFIX*.json` report; `None` when there is none (or no folder).
pub fn newest(home: &Path, prefix: &str) -> std::io::Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(dir(home)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(prefix) && name.ends_with(".json") && entry.file_type()?.is_file()) {
            continue;
        }
        let modified = entry.metadata()?.modified()?;
        // ties (same mtime) go to the greater name, so the answer does not depend on listing order
        let path = entry.path();
        if newest
            .as_ref()
            .is_none_or(|(t, p)| (modified, &path) > (*t, p))
        {
            newest = Some((modified, path));
        }
    }
    Ok(newest.map(|(_, p)| p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_report_of_a_kind_is_found_by_its_write_time() {
        let home = tempfile::tempdir().unwrap();
        assert_eq!(newest(home.path(), RETRIEVAL).unwrap(), None, "no folder");
        std::fs::create_dir_all(dir(home.path())).unwrap();
        let old = retrieval(home.path(), "2011-12-01");
        let new = retrieval(home.path(), "2011-11-01");
        std::fs::write(&old, "{}").unwrap();
        std::fs::write(dir(home.path()).join("llm-2011-10-01-x.json"), "{}").unwrap();
        std::fs::write(&new, "{}").unwrap();
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(newest(home.path(), RETRIEVAL).unwrap(), Some(new));
        assert_eq!(
            newest(home.path(), LLM).unwrap(),
            Some(dir(home.path()).join("llm-2011-10-01-x.json"))
        );
    }
}
