//! Text that fits its note: fixed font metrics (DejaVu Sans, the font the canvas asks for first),
//! wrapping of identifiers at word boundaries (CamelCase, `-`, `_`, spaces) and ellipsis as a last
//! resort.
//!
//! **Invariant:** every line returned by [`fit`] or [`ellipsize`] measures at most the width it was
//! given, by the same metrics.

/// Advance widths of ASCII 32..=126 in 1/1000 em, read from DejaVuSans.ttf.
const REGULAR: [u16; 95] = [
    318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636, 636, 636, 636, 636, 636, 636, 636, 337, 337, 838,
    838, 838, 531, 1000, 684, 686, 698, 770, 632, 575, 775, 752, 295, 295, 656, 557, 863, 748, 787, 603, 787, 695, 635, 611, 732, 684, 989, 685, 611,
    685, 390, 337, 390, 838, 500, 500, 613, 635, 550, 635, 615, 352, 635, 634, 278, 278, 579, 278, 974, 634, 612, 635, 635, 411, 521, 392, 634, 592,
    818, 592, 592, 525, 636, 337, 636, 838,
];

/// Advance widths of ASCII 32..=126 in 1/1000 em, read from DejaVuSans-Bold.ttf.
const BOLD: [u16; 95] = [
    348, 456, 521, 838, 696, 1002, 872, 306, 457, 457, 523, 838, 380, 415, 380, 365, 696, 696, 696, 696, 696, 696, 696, 696, 696, 696, 400, 400, 838,
    838, 838, 580, 1000, 774, 762, 734, 830, 683, 683, 821, 837, 372, 372, 775, 637, 995, 837, 850, 733, 850, 770, 720, 682, 812, 774, 1103, 771,
    724, 725, 457, 365, 457, 838, 500, 500, 675, 716, 593, 716, 678, 435, 716, 712, 343, 343, 665, 343, 1042, 712, 687, 716, 716, 493, 595, 478, 712,
    652, 924, 645, 652, 582, 712, 365, 712, 838,
];

/// Headroom for fonts that differ from the metrics (hinting, a fallback font).
const SAFETY: f64 = 1.04;

/// Height of a line box in em, ascent plus descent (DejaVu Sans: 0.928 + 0.236).
pub const LINE_BOX_EM: f64 = 1.17;
/// Distance from the top of a line box to its baseline, in em.
pub const ASCENT_EM: f64 = 0.93;
/// Distance between baselines, in em.
pub const LINE_HEIGHT_EM: f64 = 1.2;

/// Estimated width of `text` in pixels at `size` px. Characters outside ASCII count as 1 em.
pub fn width(text: &str, size: f64, bold: bool) -> f64 {
    let table = if bold { &BOLD } else { &REGULAR };
    let units: u32 = text
        .chars()
        .map(|c| match c as u32 {
            32..=126 => u32::from(table[c as usize - 32]),
            _ => 1000,
        })
        .sum();
    f64::from(units) * size / 1000.0 * SAFETY
}

/// Splits an identifier into the pieces a line may break between: CamelCase humps, digits runs
/// stay with their word, and separators (`-`, `_`, `.`, `/`, `:`, space) end the piece they follow.
pub fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !current.is_empty() && i > 0 {
            let prev = chars[i - 1];
            let next = chars.get(i + 1).copied();
            let hump = c.is_uppercase() && (prev.is_lowercase() || prev.is_ascii_digit());
            let acronym_end = c.is_uppercase() && prev.is_uppercase() && next.is_some_and(char::is_lowercase);
            if hump || acronym_end {
                words.push(std::mem::take(&mut current));
            }
        }
        current.push(c);
        if matches!(c, '-' | '_' | '.' | '/' | ':' | ' ') {
            words.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Greedy line filling at word boundaries; a word wider than a line is cut between characters.
pub fn wrap(text: &str, size: f64, bold: bool, max_width: f64) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in words(text) {
        let candidate = format!("{line}{word}");
        if width(candidate.trim_end(), size, bold) <= max_width {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(line.trim_end().to_string());
            line = String::new();
        }
        if width(word.trim_end(), size, bold) <= max_width {
            line = word;
            continue;
        }
        for c in word.chars() {
            let candidate = format!("{line}{c}");
            if width(candidate.trim_end(), size, bold) <= max_width || line.is_empty() {
                line = candidate;
            } else {
                lines.push(line.trim_end().to_string());
                line = c.to_string();
            }
        }
    }
    if !line.trim_end().is_empty() {
        lines.push(line.trim_end().to_string());
    }
    lines.retain(|l| !l.is_empty());
    lines
}

/// `text` cut with `…` so that it fits `max_width` (unchanged when it already fits).
pub fn ellipsize(text: &str, size: f64, bold: bool, max_width: f64) -> String {
    if width(text, size, bold) <= max_width {
        return text.to_string();
    }
    let mut out = String::new();
    for c in text.chars() {
        let candidate = format!("{out}{c}…");
        if width(&candidate, size, bold) > max_width {
            break;
        }
        out.push(c);
    }
    let cut = format!("{}…", out.trim_end());
    if width(&cut, size, bold) <= max_width { cut } else { String::new() }
}

/// Text laid out in a box: the font size chosen and the lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    pub size: f64,
    pub lines: Vec<String>,
}

/// How many lines of `size` px fit in `height` px.
pub fn max_lines(size: f64, height: f64) -> usize {
    if height < LINE_BOX_EM * size {
        return 0;
    }
    ((height - LINE_BOX_EM * size) / (LINE_HEIGHT_EM * size)).floor() as usize + 1
}

/// Wraps `text` into a `max_width` × `max_height` box at the largest of `sizes` (largest first)
/// that holds it; at the smallest size, what does not fit ends with `…`.
pub fn fit(text: &str, max_width: f64, max_height: f64, sizes: &[f64], bold: bool) -> Fitted {
    let smallest = *sizes.last().expect("at least one font size");
    for &size in sizes {
        let lines = wrap(text, size, bold, max_width);
        if lines.len() <= max_lines(size, max_height) {
            return Fitted { size, lines };
        }
    }
    let room = max_lines(smallest, max_height).max(1);
    let mut lines = wrap(text, smallest, bold, max_width);
    if lines.len() > room {
        let rest = lines[room - 1..].concat();
        lines.truncate(room - 1);
        lines.push(ellipsize(&rest, smallest, bold, max_width));
    }
    Fitted { size: smallest, lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_camel_case_and_separators() {
        assert_eq!(words("InventoryReserved"), ["Inventory", "Reserved"]);
        assert_eq!(words("HTTPRequestFailed"), ["HTTP", "Request", "Failed"]);
        assert_eq!(words("Version2Created"), ["Version2", "Created"]);
        assert_eq!(words("notify-after-shipment"), ["notify-", "after-", "shipment"]);
        assert_eq!(words("team_checkout x"), ["team_", "checkout ", "x"]);
    }

    #[test]
    fn wraps_at_word_boundaries() {
        assert_eq!(wrap("InventoryReserved", 14.0, true, 112.0), ["Inventory", "Reserved"]);
        assert_eq!(wrap("OrderCreated", 14.0, true, 112.0), ["OrderCreated"]);
        assert_eq!(wrap("reserve-after-payment", 14.0, true, 112.0), ["reserve-", "after-", "payment"]);
        assert_eq!(wrap("reserve-after-payment", 12.0, true, 112.0), ["reserve-after-", "payment"]);
    }

    #[test]
    fn every_line_fits_whatever_the_name() {
        let names = [
            "OrderCreated",
            "CustomerLoyaltyPointsRecalculationRequested",
            "Supercalifragilisticexpialidocious",
            "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW",
            "décision-prise-après-vérification",
            "a",
            "",
        ];
        for name in names {
            let fitted = fit(name, 112.0, 51.0, &[14.0, 13.0, 12.0, 11.0, 10.0], true);
            assert!(fitted.lines.len() <= max_lines(fitted.size, 51.0), "{name}: {fitted:?}");
            for line in &fitted.lines {
                assert!(width(line, fitted.size, true) <= 112.0, "{name}: {line:?} at {}", fitted.size);
            }
            let short = ellipsize(name, 10.0, false, 60.0);
            assert!(width(&short, 10.0, false) <= 60.0, "{short:?}");
        }
    }

    #[test]
    fn long_names_shrink_before_they_are_cut() {
        let fitted = fit("CustomerLoyaltyPointsRecalculationRequested", 112.0, 51.0, &[14.0, 13.0, 12.0, 11.0, 10.0], true);
        assert!(fitted.size < 14.0);
        assert_eq!(fitted.lines.concat(), "CustomerLoyaltyPointsRecalculationRequested");
    }
}
