//! The demo gateway's callers: a policy file (`--auth-file`) made at start-up with three callers
//! and fresh random API keys, written into a private directory removed on drop — `planner` (an
//! operator on every beamline: the tour's calls), `scientist` (an operator who takes a lock) and
//! `control-room` (the `safety` role: the stop button).
//!
//! Owns that file and the keys; the keys exist only in this process and the file only holds
//! their digests.

use std::path::PathBuf;

use anyhow::Context;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use beamline_mesh::gateway::auth::sha256_hex;

use crate::cli::stack::{new_private_dir, write_file};

/// One caller's name and API key.
#[derive(Clone)]
pub struct DemoCaller {
    pub name: &'static str,
    key: String,
}

/// The policy file and its callers.
pub struct DemoCallers {
    dir: PathBuf,
    pub file: PathBuf,
    pub planner: DemoCaller,
    pub scientist: DemoCaller,
    pub control_room: DemoCaller,
}

impl DemoCallers {
    /// Makes the keys and writes the policy file under the system's temp dir.
    pub fn generate() -> anyhow::Result<DemoCallers> {
        let dir = new_private_dir(&std::env::temp_dir(), "demo-auth")?;
        let caller = |name| DemoCaller {
            name,
            key: format!("{:032x}", rand::random::<u128>()),
        };
        let callers = DemoCallers {
            file: dir.join("auth.toml"),
            dir,
            planner: caller("planner"),
            scientist: caller("scientist"),
            control_room: caller("control-room"),
        };
        let mut text = String::from("# The demo's callers; keys made at start-up, gone on exit.\n");
        for (who, role) in [
            (&callers.planner, "operator"),
            (&callers.scientist, "operator"),
            (&callers.control_room, "safety"),
        ] {
            text.push_str(&format!(
                "\n[[caller]]\nname = \"{}\"\napi_key_sha256 = \"{}\"\nrole = \"{role}\"\nbeamlines = [\"*\"]\n",
                who.name,
                sha256_hex(who.key.as_bytes())
            ));
        }
        write_file(&callers.file, &text, true)
            .with_context(|| format!("cannot write {}", callers.file.display()))?;
        Ok(callers)
    }
}

impl Drop for DemoCallers {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Adds `authorization: Bearer <key>` to every call (a tonic interceptor).
#[derive(Clone)]
pub struct Bearer(AsciiMetadataValue);

impl DemoCaller {
    pub fn bearer(&self) -> Bearer {
        Bearer(
            format!("Bearer {}", self.key)
                .parse()
                .expect("a hex key is valid metadata"),
        )
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}
