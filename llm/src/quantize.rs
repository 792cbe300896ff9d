//! `recgpt model prepare`: requantise a GGUF to Q8_0 with llama.cpp's quantize API, once.
//!
//! On x86 CPUs llama.cpp's Q8_0 kernels are faster than Q4_1's (prefill especially); the
//! weights' quality stays that of the source file (requantising adds nothing). `llama-cpp-2`
//! does not wrap the quantize call, so this module is the one place that calls llama.cpp's C
//! API directly.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::{Path, PathBuf};

use super::{backend, LlmError};

/// The default output next to the input: `X.Q4_1.gguf` → `X.Q8_0.gguf`.
pub fn q8_0_path(input: &Path) -> PathBuf {
    let name = input
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let stem = name.strip_suffix(".gguf").unwrap_or(&name);
    let base = stem.rsplit_once('.').map_or(stem, |(b, _)| b);
    input.with_file_name(format!("{base}.Q8_0.gguf"))
}

/// Writes `input` requantised to Q8_0 at `output` (through a temporary file, renamed at the
/// end, so a killed run leaves nothing half-written).
pub fn requantize_q8_0(input: &Path, output: &Path, threads: usize) -> Result<(), LlmError> {
    let _ = backend();
    let text = |p: &Path| {
        CString::new(p.to_string_lossy().as_bytes())
            .map_err(|e| LlmError::Backend(format!("{}: {e}", p.display())))
    };
    if !input.is_file() {
        return Err(super::TokenizerError::Missing {
            path: input.to_path_buf(),
        }
        .into());
    }
    let part = output.with_extension("gguf.part");
    let (c_in, c_out) = (text(input)?, text(&part)?);
    // SAFETY: the parameters come from llama.cpp's own defaults with plain fields changed; both
    // paths are valid NUL-terminated strings that outlive the call; the call only reads the
    // input file and writes the output file.
    let rc = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.ftype = llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q8_0;
        params.allow_requantize = true;
        params.nthread = threads as i32;
        llama_cpp_sys_2::llama_model_quantize(c_in.as_ptr(), c_out.as_ptr(), &params)
    };
    if rc != 0 {
        let _ = std::fs::remove_file(&part);
        return Err(LlmError::Backend(format!(
            "quantizing {} failed (code {rc})",
            input.display()
        )));
    }
    std::fs::rename(&part, output)
        .map_err(|e| LlmError::Backend(format!("{}: {e}", output.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_name() {
        assert_eq!(
            q8_0_path(Path::new("/m/SmolLM2-135M-Instruct.Q4_1.gguf")),
            Path::new("/m/SmolLM2-135M-Instruct.Q8_0.gguf")
        );
    }
}
