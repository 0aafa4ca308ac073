//! `cbec label`: a good's GS1 Digital Link URI (`{base}/01/{GTIN-14}/21/{goods id}`),
//! and the QR code that carries it on the parcel's label (PNG, or drawn in the
//! terminal). A node given as the base resolves the link to its auditor page showing
//! that good's verified timeline.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use qrcode::{Color, EcLevel, QrCode};

use crate::output::Output;

#[derive(Debug, Args)]
pub struct LabelArgs {
    /// The good's id (its serial in the link).
    goods_id: String,
    /// The good's GTIN (13 or 14 digits, check digit included).
    #[arg(long)]
    gtin: String,
    /// The Digital Link resolver: a node's API URL resolves to its auditor page.
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://id.cbec-pilot.example"
    )]
    base: String,
    /// Write the QR code as a PNG here.
    #[arg(long, value_name = "FILE")]
    png: Option<PathBuf>,
    /// Draw the QR code in the terminal.
    #[arg(long)]
    terminal: bool,
}

/// Pixels per QR module in the PNG, and the quiet zone around it in modules.
const SCALE: usize = 8;
const QUIET: usize = 4;

pub fn run(args: LabelArgs, out: &Output) -> anyhow::Result<()> {
    let gtin = if args.gtin.len() == 14 && args.gtin.starts_with('0') {
        &args.gtin[1..]
    } else {
        args.gtin.as_str()
    };
    cbec_chaincode::codes::gtin13(gtin)
        .map_err(|e| anyhow::anyhow!("--gtin {}: {e}", args.gtin))?;
    cbec_chaincode::goods::check_goods_id(&args.goods_id)
        .map_err(|e| anyhow::anyhow!("goods id: {}", e.message))?;
    if !args.base.starts_with("http://") && !args.base.starts_with("https://") {
        anyhow::bail!("--base `{}` must be an http(s) URL", args.base);
    }
    let link = crate::epcis::digital_link(&args.base, gtin, &args.goods_id);
    let code = QrCode::with_error_correction_level(link.as_bytes(), EcLevel::M)
        .context("the link does not fit a QR code")?;
    if let Some(path) = &args.png {
        write_png(&code, path)?;
    }
    let drawing = args.terminal.then(|| terminal(&code));
    out.emit(
        &serde_json::json!({"goods_id": args.goods_id, "digital_link": link, "png": args.png}),
        || {
            let mut text = link.clone();
            if let Some(path) = &args.png {
                text.push_str(&format!("\nQR code written to {}", path.display()));
            }
            if let Some(drawing) = &drawing {
                text.push('\n');
                text.push_str(drawing);
            }
            text
        },
    )
}

fn dark(code: &QrCode, x: usize, y: usize) -> bool {
    let width = code.width();
    x >= QUIET
        && y >= QUIET
        && x - QUIET < width
        && y - QUIET < width
        && code[(x - QUIET, y - QUIET)] == Color::Dark
}

fn write_png(code: &QrCode, path: &std::path::Path) -> anyhow::Result<()> {
    let modules = code.width() + 2 * QUIET;
    let side = modules * SCALE;
    let mut pixels = vec![255u8; side * side];
    for y in 0..side {
        for x in 0..side {
            if dark(code, x / SCALE, y / SCALE) {
                pixels[y * side + x] = 0;
            }
        }
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, side as u32, side as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().context("PNG header")?;
        writer.write_image_data(&pixels).context("PNG data")?;
    }
    cbec_genesis::generate::write_file_atomic(path, &bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The code in half-block characters: two module rows per text line.
fn terminal(code: &QrCode) -> String {
    let modules = code.width() + 2 * QUIET;
    let mut text = String::new();
    for y in (0..modules).step_by(2) {
        for x in 0..modules {
            let (top, bottom) = (dark(code, x, y), dark(code, x, y + 1));
            // Light modules are drawn (a dark terminal shows light as the glyph).
            text.push(match (top, bottom) {
                (false, false) => '█',
                (false, true) => '▀',
                (true, false) => '▄',
                (true, true) => ' ',
            });
        }
        text.push('\n');
    }
    text
}
