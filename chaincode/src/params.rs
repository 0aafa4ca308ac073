//! Parameter values in force: the catalog's defaults overlaid with genesis.

use std::collections::BTreeMap;

use cbec_ledger::{ChaincodeConfig, ParamValue};

use crate::catalog;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    values: BTreeMap<(String, String), ParamValue>,
}

impl Params {
    /// Checks each config against the catalog and fills in defaults.
    pub fn from_configs(configs: &[ChaincodeConfig]) -> Result<Params, String> {
        let mut values = BTreeMap::new();
        for config in configs {
            catalog::check_config(config).map_err(|e| format!("chaincode `{}`: {e}", config.id))?;
            let spec = catalog::spec(&config.id)
                .ok_or_else(|| format!("unknown chaincode `{}`", config.id))?;
            for param in spec.params {
                let value = config
                    .params
                    .get(param.name)
                    .cloned()
                    .unwrap_or_else(|| param.default.value());
                values.insert((config.id.clone(), param.name.to_string()), value);
            }
        }
        Ok(Params { values })
    }

    pub fn get(&self, chaincode: &str, name: &str) -> Option<ParamValue> {
        self.values
            .get(&(chaincode.to_string(), name.to_string()))
            .cloned()
    }
}
