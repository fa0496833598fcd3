//! Which core each busy stage runs on. "auto" pins stage i to core i+1 (core 0 is left to the
//! OS, interrupts and the HTTP thread) when there are cores for all of them; "manual" takes the
//! configured ids; "off" never pins. On a machine with fewer cores than busy stages nothing is
//! pinned and the stages block instead of spinning (`ring.wait = auto`).

use crate::config::{self, ServerConfig};
use crate::error::{Result, ServerError};
use crate::telemetry::log;

/// Busy threads in the pipeline: gateway, journal stage, engine stage.
pub const PIPELINE_THREADS: usize = 3;

/// The core each stage runs on, if pinned.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cores {
    pub gateway: Option<usize>,
    pub journaler: Option<usize>,
    pub engine: Option<usize>,
}

impl Cores {
    pub fn for_config(config: &ServerConfig) -> Result<Cores> {
        let available = config::available_cores();
        let c = &config.cores;
        Ok(match c.pin.as_str() {
            "off" => Cores::default(),
            "manual" => {
                let ids = core_affinity::get_core_ids().unwrap_or_default();
                for core in [c.gateway, c.journaler, c.engine].into_iter().flatten() {
                    if !ids.iter().any(|id| id.id == core) {
                        return Err(ServerError::config(
                            "cores",
                            format!("core {core} is not available to this process"),
                        ));
                    }
                }
                Cores {
                    gateway: c.gateway,
                    journaler: c.journaler,
                    engine: c.engine,
                }
            }
            _ if available > PIPELINE_THREADS => {
                let ids = core_affinity::get_core_ids().unwrap_or_default();
                Cores {
                    gateway: ids.get(1).map(|c| c.id),
                    journaler: ids.get(2).map(|c| c.id),
                    engine: ids.get(3).map(|c| c.id),
                }
            }
            _ => Cores::default(),
        })
    }

    pub fn describe(&self) -> String {
        match (self.gateway, self.journaler, self.engine) {
            (None, None, None) => "none".into(),
            (g, j, e) => format!(
                "gateway:{},journaler:{},engine:{}",
                show(g),
                show(j),
                show(e)
            ),
        }
    }
}

fn show(core: Option<usize>) -> String {
    core.map_or("-".into(), |c| c.to_string())
}

/// Pin the calling thread to `core`, if one is given (a warning if the OS refuses).
pub fn pin(core: Option<usize>) {
    if let Some(id) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            log::line(log::Level::Warn, "pin_failed", None, &[("core", &id)]);
        }
    }
}
