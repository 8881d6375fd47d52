//! Where each module's calls go (`[backends]`): in-process Rust back ends and NATS side by side.

use crate::config::{BackendsSection, DefaultRoute, ModuleRoute};
use gatekit_agent::{Backend, Backends};
use std::collections::HashMap;
use std::sync::Arc;

/// Why the routing table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// `[backends.modules]` names a Rust back end the program did not register.
    #[error("backends.modules.{module} = \"rust\", but no Rust back end named {module:?} is compiled into this program (it has: {registered})")]
    NoSuchRustBackend {
        /// The module.
        module: String,
        /// The ones registered.
        registered: String,
    },
}

/// Builds the table: `rust` are the program's own back ends by name, `nats` the NATS back end
/// (present when `[nats] url` is set; the config's checks make sure it is when a route needs it).
pub fn backends(
    section: &BackendsSection,
    rust: &HashMap<String, Arc<dyn Backend>>,
    nats: Option<Arc<dyn Backend>>,
) -> Result<Backends, RoutingError> {
    let mut table = Backends::new();
    for (module, route) in &section.modules {
        let backend: Arc<dyn Backend> = match route {
            ModuleRoute::Echo => Arc::new(crate::embedded::Echo),
            ModuleRoute::Nats => nats.clone().expect("checked: nats.url is set"),
            ModuleRoute::Rust => rust.get(module).cloned().ok_or_else(|| {
                let mut names: Vec<&str> = rust.keys().map(String::as_str).collect();
                names.sort_unstable();
                RoutingError::NoSuchRustBackend {
                    module: module.clone(),
                    registered: if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    },
                }
            })?,
        };
        table = table.with_arc(module.clone(), backend);
    }
    // A program's own back end serves its module even when the file does not name it.
    for (module, backend) in rust {
        if !section.modules.contains_key(module) {
            table = table.with_arc(module.clone(), backend.clone());
        }
    }
    if section.default == DefaultRoute::Nats {
        table = table.with_fallback(nats.expect("checked: nats.url is set"));
    }
    Ok(table)
}
