//! The flags every command that runs a node takes (`surge serve`, `surge standby`): the
//! config file, `--set` overrides, and the three addresses, loaded into a `ServerConfig` in
//! that order (file, then `--set`, then the dedicated flags).

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
    /// TOML configuration file (deploy/surge.toml shows every key).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any key: `--set gateway.tick_ms=50` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl NodeArgs {
    /// The file, then `--set`, then the dedicated flags.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut overrides = self.overrides.clone();
        if let Some(dir) = &self.data_dir {
            overrides.push(format!("data_dir={:?}", dir.display().to_string()));
        }
        if let Some(listen) = &self.listen {
            overrides.push(format!("listen={listen:?}"));
        }
        if let Some(http) = &self.http {
            overrides.push(format!("http={http:?}"));
        }
        Ok(ServerConfig::load(self.config.as_deref(), &overrides)?)
    }
}
