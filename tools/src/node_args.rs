//! The flags every command that runs a node takes (`surge serve`, `surge standby`): the
//! config file, `--set` overrides, and the three addresses, loaded into a `ServerConfig` in
//! that order (file, then `--set`, then the dedicated flags). `ConfigArgs` is the first two
//! alone, for commands that read a node's config without running it (`surge status`).

use std::path::PathBuf;

use server::ServerConfig;

#[derive(clap::Args)]
pub struct NodeArgs {
    /// Data directory (journal/ and snapshots/). Overrides `data_dir`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Client protocol address. Overrides `listen`.
    #[arg(long)]
    pub listen: Option<String>,
    /// /metrics and /health address. Overrides `http`.
    #[arg(long)]
    pub http: Option<String>,
    #[command(flatten)]
    pub source: ConfigArgs,
}

/// A config file and `--set` overrides on top of it.
#[derive(clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file (deploy/surge.toml shows every key).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any key: `--set gateway.tick_ms=50` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl ConfigArgs {
    /// The file, then `--set`, then `more` (more overrides).
    pub fn load(&self, more: &[String]) -> anyhow::Result<ServerConfig> {
        let mut overrides = self.overrides.clone();
        overrides.extend_from_slice(more);
        Ok(ServerConfig::load(self.config.as_deref(), &overrides)?)
    }
}

impl NodeArgs {
    /// The file, then `--set`, then the dedicated flags.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut overrides = Vec::new();
        if let Some(dir) = &self.data_dir {
            overrides.push(format!("data_dir={:?}", dir.display().to_string()));
        }
        if let Some(listen) = &self.listen {
            overrides.push(format!("listen={listen:?}"));
        }
        if let Some(http) = &self.http {
            overrides.push(format!("http={http:?}"));
        }
        self.source.load(&overrides)
    }
}
