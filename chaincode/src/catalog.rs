//! The built-in chaincodes, their versions and their parameters with defaults.
//!
//! Every value DOMAIN.md marks **PARAM** is a parameter here, never a constant in a
//! rule. Genesis generation writes these defaults out explicitly, so the genesis file
//! shows every number the zone runs on; `check_config` refuses unknown chaincodes,
//! unknown parameters and values of the wrong kind.

use cbec_ledger::{ChaincodeConfig, ParamValue};

/// A parameter's default, in a form that can live in a `const`.
#[derive(Debug, Clone, Copy)]
pub enum Default {
    Int(i64),
    Text(&'static str),
    List(&'static [&'static str]),
}

impl Default {
    pub fn value(self) -> ParamValue {
        match self {
            Default::Int(v) => ParamValue::Int(v),
            Default::Text(v) => ParamValue::Text(v.to_string()),
            Default::List(v) => ParamValue::List(v.iter().map(|s| s.to_string()).collect()),
        }
    }
}

/// One parameter of a chaincode.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub default: Default,
    /// Smallest allowed integer (integers only).
    pub min: i64,
    /// The allowed values of a string parameter; empty for any.
    pub allowed: &'static [&'static str],
    pub doc: &'static str,
}

/// One built-in chaincode.
#[derive(Debug, Clone, Copy)]
pub struct ChaincodeSpec {
    pub id: &'static str,
    pub version: u32,
    pub doc: &'static str,
    pub params: &'static [ParamSpec],
}

const YEAR_OFFSET: ParamSpec = ParamSpec {
    name: "year_utc_offset_minutes",
    default: Default::Int(480),
    min: -720,
    allowed: &[],
    doc: "the calendar year is taken from block time at this offset from UTC (China Standard Time)",
};

/// The chaincodes of the pilot zone (DOMAIN.md section in brackets).
pub const BUILTIN: &[ChaincodeSpec] = &[
    ChaincodeSpec {
        id: "governance",
        version: 1,
        doc: "agencies, validator and agency keys, parameters, chaincode lifecycle [1]",
        params: &[
            ParamSpec {
                name: "wasm_fuel",
                default: Default::Int(10_000_000),
                min: 10_000,
                allowed: &[],
                doc: "fuel one call of a WebAssembly chaincode may burn (about one unit per instruction); past it, FUEL",
            },
            ParamSpec {
                name: "wasm_memory_pages",
                default: Default::Int(16),
                min: 1,
                allowed: &[],
                doc: "64 KiB pages of memory a WebAssembly chaincode may use; past it, MEMORY",
            },
            ParamSpec {
                name: "wasm_module_bytes",
                default: Default::Int(49_152),
                min: 1_024,
                allowed: &[],
                doc: "largest WebAssembly module that may be installed (it travels in one proposal transaction)",
            },
        ],
    },
    ChaincodeSpec {
        id: "enterprise",
        version: 1,
        doc: "enterprise filings, attestations, credit negative list [1, 2]",
        params: &[],
    },
    ChaincodeSpec {
        id: "goods",
        version: 1,
        doc: "goods traceability events, hash-linked per good [3]",
        params: &[],
    },
    ChaincodeSpec {
        id: "customs",
        version: 1,
        doc: "three-document matching, clearance, retail import limits and tax, risk grades [4, 5]",
        params: &[
            ParamSpec {
                name: "tx_limit_fen",
                default: Default::Int(500_000),
                min: 0,
                allowed: &[],
                doc: "per-transaction retail import limit (RMB 5,000.00)",
            },
            ParamSpec {
                name: "annual_limit_fen",
                default: Default::Int(2_600_000),
                min: 0,
                allowed: &[],
                doc: "per-buyer annual retail import limit (RMB 26,000.00)",
            },
            ParamSpec {
                name: "preferential_tax_percent",
                default: Default::Int(70),
                min: 0,
                allowed: &[],
                doc: "share of statutory VAT and consumption tax due within the limits",
            },
            ParamSpec {
                name: "waybill_reuse_months",
                default: Default::Int(6),
                min: 0,
                allowed: &[],
                doc: "a waybill number may not be reused within this many months (R3)",
            },
            ParamSpec {
                name: "return_window_days",
                default: Default::Int(30),
                min: 0,
                allowed: &[],
                doc: "a return must be applied for within this many days of release",
            },
            ParamSpec {
                name: "rounding",
                default: Default::Text("half-up"),
                min: 0,
                allowed: &["half-up"],
                doc: "rounding of tax to the fen at the final step (only half-up is implemented)",
            },
            YEAR_OFFSET,
        ],
    },
    ChaincodeSpec {
        id: "forex",
        version: 1,
        doc: "receipts and payments per enterprise per year, FX-1 [6]",
        params: &[
            ParamSpec {
                name: "exemption_threshold_cents",
                default: Default::Int(20_000_000),
                min: 0,
                allowed: &[],
                doc: "directory registration exemption holds while both sums stay below this (USD 200,000.00)",
            },
            ParamSpec {
                name: "warning_threshold_cents",
                default: Default::Int(18_000_000),
                min: 0,
                allowed: &[],
                doc: "results carry a warning at or above this (USD 180,000.00)",
            },
            YEAR_OFFSET,
        ],
    },
    ChaincodeSpec {
        id: "tax",
        version: 1,
        doc: "export retail tax exemption EXP-1, tax assessments [7]",
        params: &[
            ParamSpec {
                name: "zone_region_prefix",
                default: Default::Text("140200"),
                min: 0,
                allowed: &[],
                doc: "USCC region (positions 3-8) prefix of enterprises in the zone (Datong)",
            },
            ParamSpec {
                name: "excluded_hs_prefixes",
                default: Default::List(&[]),
                min: 0,
                allowed: &[],
                doc: "commodity code prefixes excluded from the export exemption",
            },
            YEAR_OFFSET,
        ],
    },
];

pub fn spec(id: &str) -> Option<&'static ChaincodeSpec> {
    BUILTIN.iter().find(|s| s.id == id)
}

/// Every built-in chaincode enabled, with every parameter at its default.
pub fn default_configs() -> Vec<ChaincodeConfig> {
    BUILTIN
        .iter()
        .map(|s| ChaincodeConfig {
            id: s.id.to_string(),
            version: s.version,
            params: s
                .params
                .iter()
                .map(|p| (p.name.to_string(), p.default.value()))
                .collect(),
        })
        .collect()
}

/// Checks a chaincode entry of a genesis document against the catalog.
pub fn check_config(config: &ChaincodeConfig) -> Result<(), String> {
    let Some(spec) = spec(&config.id) else {
        let known: Vec<_> = BUILTIN.iter().map(|s| s.id).collect();
        return Err(format!(
            "unknown chaincode `{}`; built-in ones are {}",
            config.id,
            known.join(", ")
        ));
    };
    if config.version != spec.version {
        return Err(format!(
            "`{}` version {} is not available; this build has version {}",
            config.id, config.version, spec.version
        ));
    }
    for (name, value) in &config.params {
        let Some(param) = spec.params.iter().find(|p| p.name == name) else {
            return Err(format!("`{}` has no parameter `{name}`", config.id));
        };
        let expected = param.default.value();
        if std::mem::discriminant(value) != std::mem::discriminant(&expected) {
            return Err(format!(
                "params.{name}: expected {}, found {}",
                expected.kind(),
                value.kind()
            ));
        }
        if let ParamValue::Int(v) = value {
            if *v < param.min {
                return Err(format!(
                    "params.{name}: {v} is below the minimum {}",
                    param.min
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_their_own_check() {
        for config in default_configs() {
            assert_eq!(check_config(&config), Ok(()), "{}", config.id);
        }
    }

    #[test]
    fn unknown_ids_versions_params_and_kinds_are_refused() {
        let mut customs = default_configs()
            .into_iter()
            .find(|c| c.id == "customs")
            .expect("customs is built in");
        let mut unknown = customs.clone();
        unknown.id = "lottery".into();
        assert!(check_config(&unknown)
            .unwrap_err()
            .contains("unknown chaincode `lottery`"));
        let mut version = customs.clone();
        version.version = 9;
        assert!(check_config(&version).unwrap_err().contains("version 9"));
        let mut extra = customs.clone();
        extra.params.insert("speed".into(), ParamValue::Int(1));
        assert!(check_config(&extra).unwrap_err().contains("`speed`"));
        customs
            .params
            .insert("tx_limit_fen".into(), ParamValue::Text("5000".into()));
        assert!(check_config(&customs)
            .unwrap_err()
            .contains("expected integer"));
        customs
            .params
            .insert("tx_limit_fen".into(), ParamValue::Int(-1));
        assert!(check_config(&customs)
            .unwrap_err()
            .contains("below the minimum"));
    }
}
