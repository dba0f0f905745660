//! The browser harness itself (tests/src/browser.rs): headless Chromium renders small
//! self-contained pages, the screenshot measures see what drew, and the page cannot reach the
//! network nor hang the tests.

use replmon_tests::browser::{
    distinct_colours, dominant_colour, is_blank, parse_colour, pixels_near, render,
    render_with_timeout, Rendered, ScratchDir, TIMEOUT,
};
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const BLUE: &str = "#1c7ed6";
const ORANGE: &str = "#e8590c";

fn page(dir: &ScratchDir, name: &str, html: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, html).unwrap();
    path
}

const CHART: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>harness</title>
<style>body { margin: 0; background: #ffffff; font-family: "DejaVu Sans", sans-serif; }</style>
</head><body>
<h1>Replication</h1>
<p id="figure">figure 99.7%</p>
<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200" viewBox="0 0 400 200">
  <line x1="10" y1="40" x2="390" y2="40" stroke="#1c7ed6" stroke-width="12"/>
  <rect x="50" y="80" width="100" height="60" fill="#e8590c"/>
</svg>
</body></html>
"##;

#[test]
fn renders_an_inline_svg_chart_and_its_text() {
    let dir = ScratchDir::new("harness").unwrap();
    let html = page(&dir, "chart.html", CHART);
    let started = Instant::now();
    let rendered = render(&html, 800, 600).unwrap();
    eprintln!("rendered in {:?}: {rendered:?}", started.elapsed());
    assert_eq!((rendered.width, rendered.height), (800, 600));
    assert_eq!(rendered.rgba.len(), 800 * 600 * 4);
    assert!(rendered.dom.contains("figure 99.7%"), "{}", rendered.dom);
    assert!(rendered.dom.contains("<svg"), "{}", rendered.dom);
    // 380 x 12 and 100 x 60 pixels drawn: anti-aliased edges aside, thousands of each.
    let blue = pixels_near(&rendered, BLUE, 8);
    let orange = pixels_near(&rendered, ORANGE, 8);
    assert!(blue > 200, "{blue} pixels near {BLUE}");
    assert!(orange > 200, "{orange} pixels near {ORANGE}");
    assert!(!is_blank(&rendered));
    // White, the two colours, and the text's anti-aliased greys.
    assert!(distinct_colours(&rendered) > 3, "{rendered:?}");
    assert_eq!(
        dominant_colour(&rendered).map(|(c, _)| c),
        Some([255, 255, 255, 255])
    );
    // The line is at y = 40 in the SVG, below the heading and the paragraph.
    let (x, y) = (0..600)
        .find_map(|y| (0..800).find_map(|x| is_blue(&rendered, x, y).then_some((x, y))))
        .unwrap();
    assert!(
        (5..30).contains(&x) && y > 60,
        "the line starts at ({x}, {y})"
    );
    // The text drew (a font is installed): dark pixels above the SVG.
    let dark = (0..y)
        .flat_map(|y| (0..800).map(move |x| (x, y)))
        .filter(|&(x, y)| rendered.pixel(x, y).is_some_and(|p| p[0] < 100))
        .count();
    assert!(dark > 100, "{dark} dark pixels of text");
}

fn is_blue(rendered: &Rendered, x: u32, y: u32) -> bool {
    let want = parse_colour(BLUE).unwrap();
    rendered
        .pixel(x, y)
        .is_some_and(|p| (0..3).all(|c| p[c].abs_diff(want[c]) <= 8))
}

#[test]
fn an_empty_page_is_blank() {
    let dir = ScratchDir::new("harness").unwrap();
    let html = page(&dir, "blank.html", "<html><body></body></html>");
    let rendered = render(&html, 640, 480).unwrap();
    assert!(is_blank(&rendered), "{rendered:?}");
    assert_eq!(distinct_colours(&rendered), 1);
    assert_eq!(pixels_near(&rendered, BLUE, 8), 0);
    assert!(rendered.dom.contains("<body></body>"), "{}", rendered.dom);
}

#[test]
fn a_page_with_external_references_renders_without_them_and_without_waiting() {
    // Something that accepts connections and never answers: a page that reached it would hang
    // until the timeout.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let dir = ScratchDir::new("harness").unwrap();
    let html = page(
        &dir,
        "external.html",
        &format!(
            r##"<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="https://example.invalid/style.css">
<script>
  let failed = 0, loaded = 0;
  function done(ok) {{ ok ? loaded++ : failed++; document.getElementById("out").textContent = "failed " + failed + " loaded " + loaded; }}
</script></head>
<body style="margin:0;background:#fff">
<p id="out">pending</p>
<img src="https://example.invalid/x.png" onload="done(true)" onerror="done(false)">
<img src="http://localhost:{port}/y.png" onload="done(true)" onerror="done(false)">
<img src="http://127.0.0.1:{port}/z.png" onload="done(true)" onerror="done(false)">
<img src="http://93.184.215.14/w.png" onload="done(true)" onerror="done(false)">
<svg width="200" height="100"><rect width="200" height="100" fill="#e8590c"/></svg>
</body></html>"##
        ),
    );
    let started = Instant::now();
    let rendered = render(&html, 800, 600).unwrap();
    let took = started.elapsed();
    assert!(took < TIMEOUT / 2, "took {took:?}");
    assert!(pixels_near(&rendered, ORANGE, 8) > 200, "{rendered:?}");
    assert!(
        rendered.dom.contains("failed 4 loaded 0"),
        "every external image should fail: {}",
        rendered.dom
    );
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("chromium connected to the local listener: {other:?}"),
    }
}

#[test]
fn a_hung_page_is_killed_at_the_timeout() {
    let dir = ScratchDir::new("harness").unwrap();
    let html = page(
        &dir,
        "spin.html",
        "<!doctype html><html><body><p>spin</p><script>for (;;) {}</script></body></html>",
    );
    let started = Instant::now();
    let error = render_with_timeout(&html, 400, 300, Duration::from_secs(4)).unwrap_err();
    let took = started.elapsed();
    assert!(format!("{error:#}").contains("timed out"), "{error:#}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn a_missing_page_is_an_error_naming_it() {
    let error = render(std::path::Path::new("/nonexistent/report.html"), 800, 600).unwrap_err();
    assert!(
        format!("{error:#}").contains("/nonexistent/report.html"),
        "{error:#}"
    );
}

#[test]
fn measures_of_a_known_image() {
    // 10 x 10: 60 pixels #1c7ed6, 39 white, one #e8590c; encoded RGB, as no screenshot is.
    let mut rgb = Vec::new();
    for i in 0..100 {
        rgb.extend_from_slice(match i {
            0..60 => &[0x1c, 0x7e, 0xd6],
            60 => &[0xe8, 0x59, 0x0c],
            _ => &[0xff, 0xff, 0xff],
        });
    }
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, 10, 10);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&rgb).unwrap();
        writer.finish().unwrap();
    }
    let image = Rendered::from_png(png, String::new()).unwrap();
    assert_eq!((image.width, image.height), (10, 10));
    assert_eq!(image.pixel(0, 0), Some([0x1c, 0x7e, 0xd6, 255]));
    assert_eq!(image.pixel(0, 6), Some([0xe8, 0x59, 0x0c, 255]));
    assert_eq!(image.pixel(10, 0), None);
    assert_eq!(pixels_near(&image, BLUE, 0), 60);
    assert_eq!(pixels_near(&image, "1C7ED6", 0), 60);
    assert_eq!(pixels_near(&image, "#1c7ed0", 5), 0);
    assert_eq!(pixels_near(&image, "#1c7ed0", 6), 60);
    assert_eq!(pixels_near(&image, ORANGE, 0), 1);
    assert_eq!(distinct_colours(&image), 3);
    assert_eq!(dominant_colour(&image), Some(([0x1c, 0x7e, 0xd6, 255], 60)));
    assert!(!is_blank(&image));
    assert_eq!(parse_colour("#12345"), None);
    assert_eq!(parse_colour("#12345g"), None);
    assert!(Rendered::from_png(b"not a png".to_vec(), String::new()).is_err());
}

#[test]
fn blank_means_more_than_99_5_percent_one_colour() {
    // 1000 pixels: 995 white is not blank (not more than 99.5%), 996 is.
    let image = |others: usize| {
        let rgba = (0..1000)
            .flat_map(|i| {
                if i < others {
                    [0, 0, 0, 255]
                } else {
                    [255, 255, 255, 255]
                }
            })
            .collect();
        Rendered {
            png: Vec::new(),
            dom: String::new(),
            width: 1000,
            height: 1,
            rgba,
        }
    };
    assert!(!is_blank(&image(5)));
    assert!(is_blank(&image(4)));
    assert!(is_blank(&image(0)));
}
