//! Typed options of profiling and quantization (filled by the CLI from its option table).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::QuantError;

/// `-quantization-schema*` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Schema {
    #[default]
    Asymmetric,
    Symmetric,
    SymmetricWithUint8,
    SymmetricWithPower2Scale,
}

impl Schema {
    pub const ALL: [Schema; 4] =
        [Schema::Asymmetric, Schema::Symmetric, Schema::SymmetricWithUint8, Schema::SymmetricWithPower2Scale];
    /// The option spelling.
    pub fn name(self) -> &'static str {
        match self {
            Schema::Asymmetric => "asymmetric",
            Schema::Symmetric => "symmetric",
            Schema::SymmetricWithUint8 => "symmetric_with_uint8",
            Schema::SymmetricWithPower2Scale => "symmetric_with_power2_scale",
        }
    }
}

/// `-quantization-calibration` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Calibration {
    /// Min-max (Glow `None`).
    #[default]
    None,
    /// Glow's KL minimization (255 quantized bins; needs ≥ 255 histogram bins).
    KLMinimization,
    /// Centred entropy calibration (facts §6.6, 128 quantized bins).
    KLMinimizationV2,
    /// Two-sided percentile (facts §6.3), with [`QuantConfig::percentile`].
    Percentile,
    /// Histogram MSE over Glow's KL windows (facts §6.4).
    MSE,
    /// MSE with clipping noise weighted ×3 (facts §6.5).
    SQNR,
}

impl Calibration {
    pub const ALL: [Calibration; 6] = [
        Calibration::None,
        Calibration::KLMinimization,
        Calibration::KLMinimizationV2,
        Calibration::Percentile,
        Calibration::MSE,
        Calibration::SQNR,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Calibration::None => "None",
            Calibration::KLMinimization => "KLMinimization",
            Calibration::KLMinimizationV2 => "KLMinimizationV2",
            Calibration::Percentile => "Percentile",
            Calibration::MSE => "MSE",
            Calibration::SQNR => "SQNR",
        }
    }
}

/// `-quantization-precision` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    Int8,
    Int16,
}

/// `-quantization-precision-bias` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum BiasPrecision {
    Int8,
    #[default]
    Int32,
}

macro_rules! named_enum {
    ($t:ty, $what:literal, [$($v:expr => $s:literal),*]) => {
        impl FromStr for $t {
            type Err = QuantError;
            fn from_str(s: &str) -> Result<Self, QuantError> {
                $( if s.eq_ignore_ascii_case($s) { return Ok($v); } )*
                Err(QuantError::Config(format!(
                    "unknown {} `{s}`; expected one of: {}", $what, [$($s),*].join(", "))))
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                $( if *self == $v { return f.write_str($s); } )*
                Ok(())
            }
        }
    };
}

named_enum!(Schema, "quantization schema", [
    Schema::Asymmetric => "asymmetric",
    Schema::Symmetric => "symmetric",
    Schema::SymmetricWithUint8 => "symmetric_with_uint8",
    Schema::SymmetricWithPower2Scale => "symmetric_with_power2_scale"
]);
named_enum!(Calibration, "quantization calibration", [
    Calibration::None => "None",
    Calibration::KLMinimization => "KLMinimization",
    Calibration::KLMinimizationV2 => "KLMinimizationV2",
    Calibration::Percentile => "Percentile",
    Calibration::MSE => "MSE",
    Calibration::SQNR => "SQNR"
]);
named_enum!(Precision, "quantization precision", [Precision::Int8 => "Int8", Precision::Int16 => "Int16"]);
named_enum!(BiasPrecision, "bias precision", [BiasPrecision::Int8 => "Int8", BiasPrecision::Int32 => "Int32"]);

/// Default `-num-histogram-bins`: large enough for the KL-family, MSE and SQNR calibrations to
/// be meaningful (Glow's default of 10 makes them silently equal to min-max).
pub const DEFAULT_HISTOGRAM_BINS: usize = 2048;

/// Default `-percentile-calibration-value`.
pub const DEFAULT_PERCENTILE: f64 = 99.99;

/// Options of the profiling run (`-dump-profile`, `-convert-to-quantize`).
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileConfig {
    /// `-num-histogram-bins` (≥ 1; default [`DEFAULT_HISTOGRAM_BINS`]).
    pub num_histogram_bins: usize,
    /// `-profiling-threads` (≥ 1). The profile does not depend on it.
    pub threads: usize,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig { num_histogram_bins: DEFAULT_HISTOGRAM_BINS, threads: 1 }
    }
}

impl ProfileConfig {
    pub fn validate(&self) -> Result<(), QuantError> {
        if self.num_histogram_bins == 0 {
            return Err(QuantError::Config("-num-histogram-bins must be at least 1".into()));
        }
        if self.threads == 0 {
            return Err(QuantError::Config("-profiling-threads must be at least 1".into()));
        }
        Ok(())
    }
}

/// Everything that decides the precision of each node (issue 10, items 3–4).
///
/// `Default` is the vendor's default: asymmetric activations and constants, no calibration,
/// Int8 with Int32 bias, nothing kept in float, no fp16.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantConfig {
    /// `-quantization-schema-activations` (or `-quantization-schema`).
    pub schema_activations: Schema,
    /// `-quantization-schema-constants` (or `-quantization-schema`).
    pub schema_constants: Schema,
    /// `-quantization-calibration`.
    pub calibration: Calibration,
    /// `-percentile-calibration-value`, in [90, 100].
    pub percentile: f64,
    /// `-quantization-precision`.
    pub precision: Precision,
    /// `-quantization-precision-bias`.
    pub bias_precision: BiasPrecision,
    /// `-enable-rowwise`: MatMul/Gemm with constant weights get per-output-row params.
    pub rowwise: bool,
    /// `-enable-channelwise`: Conv with constant weights get per-output-channel params.
    pub channelwise: bool,
    /// `-keep-original-precision-for-nodes`: ONNX op types left in their original precision.
    pub keep_original_op_types: BTreeSet<String>,
    /// `-execute-nodes-in-fp16`: ONNX op types not quantized but run in fp16.
    pub fp16_op_types: BTreeSet<String>,
    /// `-node-precision-info`: node instances (by first output name) in fp16 / fp32.
    pub node_precision: crate::NodePrecision,
    /// `-convert-to-fp16`: everything not quantized runs in fp16.
    pub convert_to_fp16: bool,
    /// `-external-quantization`: params per first-output name from another tool.
    pub external: Option<crate::ExternalQuantization>,
    /// Run quantized Conv / MatMul / Gemm as integer ops ([`crate::lower_integer`]; Int8
    /// only). `false` keeps the QDQ form, which computes them in float between the dequantized
    /// inputs and the output quantize (for comparisons; not a vendor option).
    pub integer_ops: bool,
    /// Tensors that must stay observable (`-output-node-name`): never turned into an
    /// unrounded accumulator that only a fused op sees.
    pub keep: BTreeSet<String>,
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            schema_activations: Schema::Asymmetric,
            schema_constants: Schema::Asymmetric,
            calibration: Calibration::None,
            percentile: DEFAULT_PERCENTILE,
            precision: Precision::Int8,
            bias_precision: BiasPrecision::Int32,
            rowwise: false,
            channelwise: false,
            keep_original_op_types: BTreeSet::new(),
            fp16_op_types: BTreeSet::new(),
            node_precision: crate::NodePrecision::default(),
            convert_to_fp16: false,
            external: None,
            integer_ops: true,
            keep: BTreeSet::new(),
        }
    }
}

impl QuantConfig {
    /// Checks option values and combinations that do not need the graph.
    pub fn validate(&self) -> Result<(), QuantError> {
        if !(90.0..=100.0).contains(&self.percentile) || self.percentile.is_nan() {
            return Err(QuantError::Config(format!(
                "-percentile-calibration-value={} is out of range: it must be between 90 and 100",
                self.percentile
            )));
        }
        if self.precision == Precision::Int16 && self.rowwise {
            return Err(QuantError::Config(
                "-enable-rowwise needs -quantization-precision=Int8 (rowwise weights are always int8)".into(),
            ));
        }
        if self.precision == Precision::Int16 && self.bias_precision == BiasPrecision::Int8 {
            return Err(QuantError::Config(
                "-quantization-precision-bias=Int8 needs -quantization-precision=Int8 (an Int16 model keeps an Int32 bias)"
                    .into(),
            ));
        }
        for (opt, set) in [
            ("-keep-original-precision-for-nodes", &self.keep_original_op_types),
            ("-execute-nodes-in-fp16", &self.fp16_op_types),
        ] {
            for op in set {
                if !crate::ops::is_known_op_type(op) {
                    return Err(QuantError::Config(format!(
                        "{opt}: `{op}` is not an ONNX op type (op kinds are ONNX op types, e.g. Conv,MatMul,Add)"
                    )));
                }
            }
        }
        if let Some(both) = self.keep_original_op_types.intersection(&self.fp16_op_types).next() {
            return Err(QuantError::Config(format!(
                "op type `{both}` is in both -keep-original-precision-for-nodes and -execute-nodes-in-fp16"
            )));
        }
        Ok(())
    }

    /// Parses a comma-separated op type list (`Add,Div`), trimming blanks.
    pub fn parse_op_types(list: &str) -> BTreeSet<String> {
        list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        for s in Schema::ALL {
            assert_eq!(s.name().parse::<Schema>().unwrap(), s);
            assert_eq!(s.to_string(), s.name());
        }
        for c in Calibration::ALL {
            assert_eq!(c.name().parse::<Calibration>().unwrap(), c);
        }
        let e = "kl".parse::<Calibration>().unwrap_err().to_string();
        assert!(e.contains("KLMinimization") && e.contains("`kl`"), "{e}");
        assert_eq!("int16".parse::<Precision>().unwrap(), Precision::Int16);
    }

    #[test]
    fn bad_combinations() {
        let c = QuantConfig { percentile: 89.0, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("between 90 and 100"));
        let c = QuantConfig { percentile: 100.5, ..Default::default() };
        assert!(c.validate().is_err());
        let c = QuantConfig { precision: Precision::Int16, rowwise: true, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("Int8"));
        let c = QuantConfig { keep_original_op_types: QuantConfig::parse_op_types("Add, Frobnicate"), ..Default::default() };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("Frobnicate") && e.contains("-keep-original-precision-for-nodes"), "{e}");
        let c = QuantConfig { fp16_op_types: QuantConfig::parse_op_types("conv"), ..Default::default() };
        assert!(c.validate().is_err(), "op types are case-sensitive ONNX names");
        assert!(QuantConfig::default().validate().is_ok());
    }
}
