//! Procedural scenes: "stuff" backgrounds of textured regions and "things" (coloured shapes)
//! painted over them in order, with exact visible masks and COCO-style boxes.
//!
//! A scene is a label map (one layer id per pixel) plus the list of objects it holds. Things are
//! rasterised with pycocotools' own polygon algorithm ([`crate::data::rle::from_polygon`]), so the polygon
//! written to a COCO file decodes to exactly the pixels the generator painted. A thing painted
//! later hides what is under it; the masks are what stays visible.
//!
//! **Occlusion rule**: a new thing is only placed where every earlier thing keeps at least half
//! of its own pixels visible (up to 25 placements are tried, then the thing is not generated).
//! A fully or mostly hidden thing is therefore never generated; stuff may be hidden freely, and
//! a stuff class with no visible pixel left has no object.

use super::raster::{for_each_one_run, trace_polygons};
use crate::data::rle;
use crate::rng::SplitMix64;
use crate::{Error, Result};
use std::f64::consts::PI;

/// Background region classes, named after the COCO-Stuff classes they imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stuff {
    Sky,
    Clouds,
    Grass,
    Sea,
    Sand,
    Road,
    Wall,
    Floor,
}

impl Stuff {
    pub const ALL: [Stuff; 8] = [
        Stuff::Sky,
        Stuff::Clouds,
        Stuff::Grass,
        Stuff::Sea,
        Stuff::Sand,
        Stuff::Road,
        Stuff::Wall,
        Stuff::Floor,
    ];

    /// The COCO-Stuff name (the vocabulary name).
    pub fn name(self) -> &'static str {
        match self {
            Stuff::Sky => "sky-other",
            Stuff::Clouds => "clouds",
            Stuff::Grass => "grass",
            Stuff::Sea => "sea",
            Stuff::Sand => "sand",
            Stuff::Road => "road",
            Stuff::Wall => "wall-other",
            Stuff::Floor => "floor-wood",
        }
    }

    /// The COCO-Stuff 2017 category id of the class of that name.
    pub fn coco_id(self) -> i64 {
        match self {
            Stuff::Sky => 157,
            Stuff::Clouds => 106,
            Stuff::Grass => 124,
            Stuff::Sea => 155,
            Stuff::Sand => 154,
            Stuff::Road => 149,
            Stuff::Wall => 173,
            Stuff::Floor => 118,
        }
    }

    /// The COCO-Stuff supercategory.
    pub fn supercategory(self) -> &'static str {
        match self {
            Stuff::Sky | Stuff::Clouds => "sky",
            Stuff::Grass => "plant",
            Stuff::Sea => "water",
            Stuff::Sand | Stuff::Road => "ground",
            Stuff::Wall => "wall",
            Stuff::Floor => "floor",
        }
    }

    /// A Visual Genome-style name (VG annotators write "sky", "water", "wall").
    pub fn vg_name(self) -> &'static str {
        match self {
            Stuff::Sky => "sky",
            Stuff::Clouds => "clouds",
            Stuff::Grass => "grass",
            Stuff::Sea => "water",
            Stuff::Sand => "sand",
            Stuff::Road => "road",
            Stuff::Wall => "wall",
            Stuff::Floor => "floor",
        }
    }

    /// Ground classes of outdoor scenes.
    const GROUND: [Stuff; 4] = [Stuff::Grass, Stuff::Sea, Stuff::Sand, Stuff::Road];
}

/// Thing shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    Square,
    Circle,
    Triangle,
    Star,
    Cross,
}

impl Shape {
    pub const ALL: [Shape; 5] = [
        Shape::Square,
        Shape::Circle,
        Shape::Triangle,
        Shape::Star,
        Shape::Cross,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Square => "square",
            Shape::Circle => "circle",
            Shape::Triangle => "triangle",
            Shape::Star => "star",
            Shape::Cross => "cross",
        }
    }

    /// Vertices of the shape around the origin, extent about ±1.
    fn unit_polygon(self) -> Vec<(f64, f64)> {
        match self {
            Shape::Square => vec![(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
            Shape::Circle => (0..32)
                .map(|i| {
                    let a = 2.0 * PI * f64::from(i) / 32.0;
                    (a.cos(), a.sin())
                })
                .collect(),
            Shape::Triangle => [-90.0f64, 30.0, 150.0]
                .iter()
                .map(|deg| {
                    let a = deg.to_radians();
                    // Shifted down so that the bounding box is centred on the origin.
                    (1.1 * a.cos(), 1.1 * a.sin() + 0.275)
                })
                .collect(),
            Shape::Star => (0..10)
                .map(|i| {
                    let a = (-90.0 + 36.0 * f64::from(i)).to_radians();
                    let r = if i % 2 == 0 { 1.1 } else { 0.45 };
                    (r * a.cos(), r * a.sin())
                })
                .collect(),
            Shape::Cross => {
                let (a, b) = (0.35, 1.0);
                vec![
                    (-a, -b),
                    (a, -b),
                    (a, -a),
                    (b, -a),
                    (b, a),
                    (a, a),
                    (a, b),
                    (-a, b),
                    (-a, a),
                    (-b, a),
                    (-b, -a),
                    (-a, -a),
                ]
            }
        }
    }
}

/// Thing colours: saturated, so that they stand out from the muted stuff textures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Colour {
    Red,
    Orange,
    Yellow,
    Green,
    Blue,
    Purple,
}

impl Colour {
    pub const ALL: [Colour; 6] = [
        Colour::Red,
        Colour::Orange,
        Colour::Yellow,
        Colour::Green,
        Colour::Blue,
        Colour::Purple,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Orange => "orange",
            Colour::Yellow => "yellow",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Purple => "purple",
        }
    }

    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [215, 35, 40],
            Colour::Orange => [245, 135, 20],
            Colour::Yellow => [245, 225, 45],
            Colour::Green => [20, 190, 110],
            Colour::Blue => [40, 70, 225],
            Colour::Purple => [150, 55, 200],
        }
    }
}

/// An object category: a stuff class or a `<colour> <shape>` thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Stuff(Stuff),
    Thing(Colour, Shape),
}

/// COCO 2017 thing category ids in order, with the real gaps (12, 26, 29, 30, …).
const COCO_THING_IDS: [i64; 30] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34,
];

impl Category {
    /// Every category in vocabulary order (after `__image__`): stuff, then things colour-major.
    pub fn all() -> Vec<Category> {
        let mut v: Vec<Category> = Stuff::ALL.iter().map(|&s| Category::Stuff(s)).collect();
        for &c in &Colour::ALL {
            for &s in &Shape::ALL {
                v.push(Category::Thing(c, s));
            }
        }
        v
    }

    /// Vocabulary name: the COCO-Stuff name for stuff, `"<colour> <shape>"` for things.
    pub fn name(self) -> String {
        match self {
            Category::Stuff(s) => s.name().to_string(),
            Category::Thing(c, s) => format!("{} {}", c.name(), s.name()),
        }
    }

    /// Index in the `shapes` vocabulary (`__image__` is 0).
    pub fn vocab_index(self) -> i64 {
        match self {
            Category::Stuff(s) => 1 + Stuff::ALL.iter().position(|&x| x == s).unwrap_or(0) as i64,
            Category::Thing(c, s) => 1 + Stuff::ALL.len() as i64 + self.thing_ordinal(c, s),
        }
    }

    fn thing_ordinal(self, c: Colour, s: Shape) -> i64 {
        let ci = Colour::ALL.iter().position(|&x| x == c).unwrap_or(0);
        let si = Shape::ALL.iter().position(|&x| x == s).unwrap_or(0);
        (ci * Shape::ALL.len() + si) as i64
    }

    /// The category id written to COCO files: real COCO-Stuff ids for stuff, and COCO-like thing
    /// ids (1.., with the real gaps) for things.
    pub fn coco_id(self) -> i64 {
        match self {
            Category::Stuff(s) => s.coco_id(),
            Category::Thing(c, s) => COCO_THING_IDS[self.thing_ordinal(c, s) as usize],
        }
    }

    pub fn is_thing(self) -> bool {
        matches!(self, Category::Thing(..))
    }
}

/// What a scene should contain.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneConfig {
    /// Image height `H` in pixels.
    pub height: usize,
    /// Image width `W` in pixels.
    pub width: usize,
    /// Objects (stuff and things) that pass the COCO size filter, inclusive bounds.
    pub min_objects: usize,
    pub max_objects: usize,
    /// The COCO loader's filter: an object counts iff its box area / image area is strictly
    /// greater than this.
    pub min_object_size: f64,
    /// Probability that a thing is annotated as an `iscrowd=1` RLE instead of a polygon.
    pub crowd_probability: f64,
}

impl SceneConfig {
    /// COCO's defaults (§15.2): 3–8 objects, min object size 0.02.
    pub fn new(height: usize, width: usize) -> Self {
        SceneConfig {
            height,
            width,
            min_objects: 3,
            max_objects: 8,
            min_object_size: 0.02,
            crowd_probability: 0.0,
        }
    }
}

/// One annotated object of a scene.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneObject {
    pub category: Category,
    /// COCO `bbox` `[x, y, w, h]` in pixels: the extent of the written polygon for a fully
    /// visible thing, otherwise the tight box of the visible pixels (`toBbox` of its mask).
    pub bbox: [f64; 4],
    /// Visible pixels.
    pub area: usize,
    /// Written as an `iscrowd=1` uncompressed RLE.
    pub iscrowd: bool,
    /// The thing's shape polygon (written as its segmentation when fully visible and not a
    /// crowd); `None` for stuff.
    pub shape_polygon: Option<Vec<f64>>,
    /// Part of the thing is hidden by a later thing.
    pub occluded: bool,
    /// Tight pixel box `[x0, y0, x1, y1)` of the visible pixels.
    pub pixel_box: [usize; 4],
    /// Painting order among things (0 = first painted); `None` for stuff.
    pub paint_order: Option<usize>,
    layer: u8,
}

/// How an object's segmentation is written in COCO files.
#[derive(Debug, Clone, PartialEq)]
pub enum Segmentation {
    /// Polygon list; their union rasterised by pycocotools is the visible mask.
    Polygons(Vec<Vec<f64>>),
    /// Uncompressed RLE counts (column-major, starting with zeros) of the `H × W` mask.
    Rle(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq)]
struct Style {
    seed: u32,
    /// Horizon row per column (sky gradient), if outdoor.
    horizon: Option<f64>,
    sea_phase: f64,
}

/// A generated scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub height: usize,
    pub width: usize,
    /// Things in painting order, then stuff in vocabulary order (the COCO loader's order:
    /// instance annotations, then stuff annotations).
    pub objects: Vec<SceneObject>,
    /// Layer id per pixel, column-major (`x·H + y`) like COCO's RLE, so shapes rasterised as
    /// RLE runs paint contiguous slices.
    labels: Vec<u8>,
    style: Style,
}

struct Layer {
    category: Category,
    full: usize,
    visible: usize,
    polygon: Option<Vec<f64>>,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl Scene {
    /// Generates the scene for `seed`: deterministic, and the same on every platform.
    ///
    /// Tries layouts until the number of objects passing the size filter is within
    /// `[min_objects, max_objects]`.
    pub fn generate(seed: u64, cfg: &SceneConfig) -> Result<Scene> {
        if cfg.height == 0 || cfg.width == 0 || cfg.height > 65_535 || cfg.width > 65_535 {
            return Err(Error::invalid(format!(
                "synthetic scene size {}x{}: height and width must be in 1..=65535",
                cfg.height, cfg.width
            )));
        }
        if cfg.min_objects > cfg.max_objects {
            return Err(Error::invalid(format!(
                "synthetic scenes: min_objects_per_image {} is greater than max_objects_per_image {}",
                cfg.min_objects, cfg.max_objects
            )));
        }
        const ATTEMPTS: u64 = 64;
        for attempt in 0..ATTEMPTS {
            let mut rng = SplitMix64::from_parts(&[seed, attempt]);
            let scene = Self::try_generate(&mut rng, cfg);
            let kept = scene.kept(cfg.min_object_size).len();
            if (cfg.min_objects..=cfg.max_objects).contains(&kept) {
                return Ok(scene);
            }
        }
        Err(Error::invalid(format!(
            "synthetic scenes: no {}x{} scene with {}..={} objects larger than {} of the image \
             found in {ATTEMPTS} attempts; use a larger image or looser object limits",
            cfg.height, cfg.width, cfg.min_objects, cfg.max_objects, cfg.min_object_size
        )))
    }

    /// Indices of the objects the COCO loader keeps: box area / image area `>` `min_object_size`
    /// (strict, as §15.3), in object order.
    pub fn kept(&self, min_object_size: f64) -> Vec<usize> {
        let image_area = (self.width * self.height) as f64;
        (0..self.objects.len())
            .filter(|&k| {
                let b = self.objects[k].bbox;
                b[2] * b[3] / image_area > min_object_size
            })
            .collect()
    }

    /// `(H, W)` row-major 0/1 mask of the visible pixels of object `k`.
    pub fn visible_mask(&self, k: usize) -> Vec<u8> {
        let layer = self.objects[k].layer;
        self.row_major(|l| l == layer)
    }

    /// `(H, W)` row-major 0/1 mask of all visible thing pixels (COCO-Stuff's `other`).
    pub fn things_mask(&self) -> Vec<u8> {
        let mut is_thing = [false; 256];
        for o in &self.objects {
            is_thing[usize::from(o.layer)] = o.category.is_thing();
        }
        self.row_major(|l| is_thing[usize::from(l)])
    }

    /// `(H, W)` row-major 0/1 mask of the pixels whose layer satisfies `f`.
    fn row_major(&self, f: impl Fn(u8) -> bool) -> Vec<u8> {
        let (h, w) = (self.height, self.width);
        let mut out = vec![0u8; h * w];
        for (x, col) in self.labels.chunks_exact(h).enumerate() {
            for (y, &l) in col.iter().enumerate() {
                out[y * w + x] = u8::from(f(l));
            }
        }
        out
    }

    /// The COCO segmentation of object `k`: its shape polygon if fully visible, an RLE if it is
    /// a crowd or stuff, otherwise staircase polygons of its visible pixels.
    pub fn segmentation(&self, k: usize) -> Segmentation {
        let o = &self.objects[k];
        if let (Some(p), false, false) = (&o.shape_polygon, o.occluded, o.iscrowd) {
            return Segmentation::Polygons(vec![p.clone()]);
        }
        if o.iscrowd || !o.category.is_thing() {
            let colmajor: Vec<u8> = self
                .labels
                .iter()
                .map(|&l| u8::from(l == o.layer))
                .collect();
            return Segmentation::Rle(rle::encode(&colmajor, self.height, self.width).counts);
        }
        let [x0, y0, x1, y1] = o.pixel_box;
        let (bw, bh) = (x1 - x0, y1 - y0);
        let mut window = vec![0u8; bw * bh];
        for y in 0..bh {
            for x in 0..bw {
                window[y * bw + x] =
                    u8::from(self.labels[(x + x0) * self.height + y + y0] == o.layer);
            }
        }
        Segmentation::Polygons(trace_polygons(&window, bw, bh, x0, y0))
    }

    fn try_generate(rng: &mut SplitMix64, cfg: &SceneConfig) -> Scene {
        let (h, w) = (cfg.height, cfg.width);
        let mut labels = vec![0u8; h * w];
        let mut layers: Vec<Layer> = Vec::new();
        let new_layer = |layers: &mut Vec<Layer>, category: Category| -> u8 {
            layers.push(Layer {
                category,
                full: 0,
                visible: 0,
                polygon: None,
            });
            (layers.len() - 1) as u8
        };
        // At least one slot is left for a thing.
        let stuff_budget = cfg.max_objects.saturating_sub(1).max(1);
        let (hf, wf) = (h as f64, w as f64);
        let mut horizon_mean = None;
        if rng.chance(0.7) {
            // Outdoor: sky above a wavy horizon, one or two ground bands, maybe clouds.
            let sky = new_layer(&mut layers, Category::Stuff(Stuff::Sky));
            let ground = Stuff::GROUND[rng.below(Stuff::GROUND.len())];
            let g1 = new_layer(&mut layers, Category::Stuff(ground));
            let base = rng.uniform(0.3, 0.6) * hf;
            let amp = rng.uniform(0.0, 0.06) * hf;
            let freq = rng.uniform(0.5, 2.0);
            let phase = rng.uniform(0.0, 2.0 * PI);
            horizon_mean = Some(base);
            let second = (stuff_budget >= 3 && rng.chance(0.35)).then(|| {
                let mut g2 = Stuff::GROUND[rng.below(Stuff::GROUND.len())];
                if g2 == ground {
                    g2 = Stuff::GROUND[(Stuff::GROUND
                        .iter()
                        .position(|&g| g == ground)
                        .unwrap_or(0)
                        + 1)
                        % Stuff::GROUND.len()];
                }
                let layer = new_layer(&mut layers, Category::Stuff(g2));
                let b2 = rng.uniform(base / hf + 0.15, 0.9).min(0.9) * hf;
                let amp2 = rng.uniform(0.0, 0.04) * hf;
                let phase2 = rng.uniform(0.0, 2.0 * PI);
                (layer, b2, amp2, phase2)
            });
            // Rows `y` with `y + 0.5 < boundary`, as a count.
            let rows_above = |boundary: f64| ((boundary - 0.5).ceil().max(0.0) as usize).min(h);
            for x in 0..w {
                let t = 2.0 * PI * freq * (x as f64 + 0.5) / wf + phase;
                let yh = base + amp * t.sin();
                let n_sky = rows_above(yh);
                let (n_g1, g2) = match second {
                    Some((layer, b2, amp2, p2)) => {
                        let y2 = (b2 + amp2 * (2.0 * PI * 1.3 * (x as f64 + 0.5) / wf + p2).sin())
                            .max(yh);
                        (rows_above(y2), layer)
                    }
                    None => (h, g1),
                };
                let col = &mut labels[x * h..(x + 1) * h];
                col[..n_sky].fill(sky);
                col[n_sky..n_g1.max(n_sky)].fill(g1);
                col[n_g1.max(n_sky)..].fill(g2);
            }
            let budget_left = stuff_budget.saturating_sub(layers.len());
            if budget_left >= 1 && rng.chance(0.5) {
                let clouds = new_layer(&mut layers, Category::Stuff(Stuff::Clouds));
                let n = if rng.chance(0.3) { 2 } else { 1 };
                for _ in 0..n {
                    let rx = rng.uniform(0.1, 0.2) * wf;
                    let ry = rng.uniform(0.05, 0.09) * hf;
                    let cx = rng.uniform(0.1, 0.9) * wf;
                    let cy = rng.uniform(0.25, 0.75) * (base - amp);
                    // A puffy cloud: three overlapping ellipses.
                    let parts = [
                        (cx - 0.5 * rx, cy + 0.2 * ry, 0.55 * rx, 0.7 * ry),
                        (cx, cy - 0.2 * ry, 0.6 * rx, ry),
                        (cx + 0.5 * rx, cy + 0.2 * ry, 0.55 * rx, 0.7 * ry),
                    ];
                    let ys = ((cy - 1.2 * ry).floor().max(0.0) as usize).min(h);
                    let ye = ((cy + 1.2 * ry).ceil().max(0.0) as usize).min(h);
                    let xs = ((cx - 1.2 * rx).floor().max(0.0) as usize).min(w);
                    let xe = ((cx + 1.2 * rx).ceil().max(0.0) as usize).min(w);
                    for y in ys..ye {
                        for x in xs..xe {
                            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                            let hit = parts.iter().any(|&(ex, ey, ax, ay)| {
                                let (dx, dy) = ((px - ex) / ax, (py - ey) / ay);
                                dx * dx + dy * dy < 1.0
                            });
                            if hit && labels[x * h + y] == sky {
                                labels[x * h + y] = clouds;
                                layers[usize::from(clouds)].visible += 1;
                            }
                        }
                    }
                }
            }
        } else {
            // Indoor: a wall above a floor.
            let wall = new_layer(&mut layers, Category::Stuff(Stuff::Wall));
            let floor = new_layer(&mut layers, Category::Stuff(Stuff::Floor));
            let yb = rng.uniform(0.45, 0.7) * hf;
            let n_wall = ((yb - 0.5).ceil().max(0.0) as usize).min(h);
            for col in labels.chunks_exact_mut(h) {
                col[..n_wall].fill(wall);
                col[n_wall..].fill(floor);
            }
        }
        // Sky, ground bands, wall and floor are never empty; clouds may be.
        let n_stuff = layers
            .iter()
            .filter(|l| l.category != Category::Stuff(Stuff::Clouds) || l.visible > 0)
            .count();
        let lo = cfg.min_objects.max(n_stuff + 1);
        let target = if lo <= cfg.max_objects {
            rng.int_in(lo, cfg.max_objects)
        } else {
            n_stuff + 1
        };
        let n_things = target.saturating_sub(n_stuff).max(1);
        let first_thing = layers.len();

        // Things, sized so that even the smallest shape's box passes the size filter.
        let side = (hf * wf).sqrt();
        let f_min = (1.4 * cfg.min_object_size.max(0.0).sqrt()).max(0.12);
        let f_max = (f_min + 0.05).max(0.45);
        let mut cover = vec![0usize; 256];
        for _ in 0..n_things {
            if layers.len() >= 255 {
                break;
            }
            let colour = Colour::ALL[rng.below(Colour::ALL.len())];
            let shape = Shape::ALL[rng.below(Shape::ALL.len())];
            let unit = shape.unit_polygon();
            for _try in 0..25 {
                let angle = if shape == Shape::Circle {
                    0.0
                } else {
                    rng.uniform(-0.35, 0.35)
                };
                let (sa, ca) = angle.sin_cos();
                let rotated: Vec<(f64, f64)> = unit
                    .iter()
                    .map(|&(x, y)| (x * ca - y * sa, x * sa + y * ca))
                    .collect();
                let (mut ex, mut ey) = (0f64, 0f64);
                for &(x, y) in &rotated {
                    ex = ex.max(x.abs());
                    ey = ey.max(y.abs());
                }
                let mut d = rng.uniform(f_min, f_max) * side;
                // Fit inside the image with a one-pixel margin.
                d = d
                    .min(2.0 * (wf / 2.0 - 1.5) / ex)
                    .min(2.0 * (hf / 2.0 - 1.5) / ey);
                if d < 2.0 {
                    break;
                }
                let (rx, ry) = (ex * d / 2.0, ey * d / 2.0);
                let cx = rng.uniform(rx + 1.0, wf - 1.0 - rx);
                let cy = rng.uniform(ry + 1.0, hf - 1.0 - ry);
                let polygon: Vec<f64> = rotated
                    .iter()
                    .flat_map(|&(x, y)| [round2(cx + x * d / 2.0), round2(cy + y * d / 2.0)])
                    .collect();
                let counts = rle::from_polygon(&polygon, h, w).counts;
                let full: usize = counts.iter().skip(1).step_by(2).map(|&c| c as usize).sum();
                if full == 0 {
                    continue;
                }
                cover[..layers.len()].fill(0);
                for_each_one_run(&counts, |start, len| {
                    for &l in &labels[start..start + len] {
                        cover[usize::from(l)] += 1;
                    }
                });
                let hides_too_much = (first_thing..layers.len())
                    .any(|j| 2 * (layers[j].visible - cover[j]) < layers[j].full);
                if hides_too_much {
                    continue;
                }
                for (j, layer) in layers.iter_mut().enumerate().skip(first_thing) {
                    layer.visible -= cover[j];
                }
                let id = new_layer(&mut layers, Category::Thing(colour, shape));
                layers[usize::from(id)].full = full;
                layers[usize::from(id)].visible = full;
                layers[usize::from(id)].polygon = Some(polygon);
                for_each_one_run(&counts, |start, len| {
                    labels[start..start + len].fill(id);
                });
                break;
            }
        }

        // Tight boxes and pixel counts of the visible pixels, per layer, run by run.
        let mut boxes = vec![[usize::MAX, usize::MAX, 0usize, 0usize]; layers.len()];
        let mut counts = vec![0usize; layers.len()];
        for (x, col) in labels.chunks_exact(h).enumerate() {
            let mut y = 0;
            while y < h {
                let l = col[y];
                let mut end = y + 1;
                while end < h && col[end] == l {
                    end += 1;
                }
                let b = &mut boxes[usize::from(l)];
                b[0] = b[0].min(x);
                b[1] = b[1].min(y);
                b[2] = b[2].max(x + 1);
                b[3] = b[3].max(end);
                counts[usize::from(l)] += end - y;
                y = end;
            }
        }
        for (layer, &n) in layers.iter_mut().zip(&counts) {
            debug_assert!(!layer.category.is_thing() || layer.visible == n);
            layer.visible = n;
        }
        let mut objects = Vec::new();
        let mut order: Vec<usize> = (first_thing..layers.len()).collect();
        let mut stuff: Vec<usize> = (0..first_thing).collect();
        stuff.sort_by_key(|&l| layers[l].category.vocab_index());
        order.extend(stuff);
        for l in order {
            let layer = &layers[l];
            if layer.visible == 0 {
                continue;
            }
            let [x0, y0, x1, y1] = boxes[l];
            let is_thing = layer.category.is_thing();
            let iscrowd = is_thing && rng.chance(cfg.crowd_probability);
            let occluded = layer.visible < layer.full;
            let bbox = match &layer.polygon {
                Some(p) if !occluded && !iscrowd => {
                    let xs = p.iter().step_by(2);
                    let ys = p.iter().skip(1).step_by(2);
                    let min_x = xs.clone().fold(f64::INFINITY, |a, &b| a.min(b));
                    let max_x = xs.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                    let min_y = ys.clone().fold(f64::INFINITY, |a, &b| a.min(b));
                    let max_y = ys.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                    [min_x, min_y, round2(max_x - min_x), round2(max_y - min_y)]
                }
                _ => [x0 as f64, y0 as f64, (x1 - x0) as f64, (y1 - y0) as f64],
            };
            objects.push(SceneObject {
                category: layer.category,
                bbox,
                area: layer.visible,
                iscrowd,
                shape_polygon: layer.polygon.clone(),
                occluded: is_thing && occluded,
                pixel_box: [x0, y0, x1, y1],
                paint_order: is_thing.then_some(l - first_thing),
                layer: l as u8,
            });
        }
        let style = Style {
            seed: rng.next_u64() as u32,
            horizon: horizon_mean,
            sea_phase: rng.uniform(0.0, 2.0 * PI),
        };
        Scene {
            height: h,
            width: w,
            objects,
            labels,
            style,
        }
    }

    /// Paints the scene: `(H, W, 3)` 8-bit RGB.
    ///
    /// Stuff gets a class colour with a mild texture (sky gradient, grass blades, sea ripples,
    /// sand speckle, wall stripes, floor planks); things a flat colour lit from the top.
    /// Texture scales with the image so the look is the same at every size.
    pub fn render(&self) -> Vec<u8> {
        let (h, w) = (self.height, self.width);
        let unit = (h.min(w) as f64 / 64.0).max(0.25);
        let seed = self.style.seed;
        let mut by_layer: [Option<&SceneObject>; 256] = [None; 256];
        for o in &self.objects {
            by_layer[usize::from(o.layer)] = Some(o);
        }
        // Sea ripples: sin(a(y) + b(x)) from two tables.
        let (row_s, row_c): (Vec<f64>, Vec<f64>) = (0..h)
            .map(|y| (2.0 * PI * y as f64 / (4.0 * unit)).sin_cos())
            .unzip();
        let (col_s, col_c): (Vec<f64>, Vec<f64>) = (0..w)
            .map(|x| {
                (1.5 * (2.0 * PI * x as f64 / (24.0 * unit) + self.style.sea_phase).sin()).sin_cos()
            })
            .unzip();
        let sky_bottom = self.style.horizon.unwrap_or(h as f64).max(1.0);
        let mut rgb = vec![0u8; h * w * 3];
        for y in 0..h {
            for x in 0..w {
                let l = self.labels[x * h + y];
                let noise = |amp: f64, salt: u32| -> f64 {
                    amp * (hash3(x as u32, y as u32, seed ^ salt) as f64 / u32::MAX as f64 * 2.0
                        - 1.0)
                };
                let c: [f64; 3] = match by_layer[usize::from(l)].map(|o| o.category) {
                    None => [0.0, 0.0, 0.0],
                    Some(Category::Thing(colour, _)) => {
                        let o = by_layer[usize::from(l)].expect("matched Some");
                        let [_, y0, _, y1] = o.pixel_box;
                        let t = (y - y0) as f64 / (y1 - y0).max(1) as f64;
                        let shade = 1.08 - 0.2 * t;
                        let n = noise(5.0, 1);
                        let [r, g, b] = colour.rgb();
                        [
                            f64::from(r) * shade + n,
                            f64::from(g) * shade + n,
                            f64::from(b) * shade + n,
                        ]
                    }
                    Some(Category::Stuff(s)) => match s {
                        Stuff::Sky => {
                            let t = (y as f64 / sky_bottom).min(1.0);
                            let n = noise(3.0, 2);
                            [
                                95.0 + 80.0 * t + n,
                                155.0 + 55.0 * t + n,
                                230.0 + 15.0 * t + n,
                            ]
                        }
                        Stuff::Clouds => {
                            let n = noise(6.0, 3);
                            [236.0 + n, 238.0 + n, 244.0 + n]
                        }
                        Stuff::Grass => {
                            let blade = hash3(x as u32, (y as f64 / (2.5 * unit)) as u32, seed ^ 4);
                            let n = (blade as f64 / u32::MAX as f64) * 2.0 - 1.0;
                            [105.0 + 12.0 * n, 150.0 + 25.0 * n, 55.0 + 8.0 * n]
                        }
                        Stuff::Sea => {
                            // sin(a + b) = sin a cos b + cos a sin b
                            let r = row_s[y] * col_c[x] + row_c[y] * col_s[x];
                            let n = noise(3.0, 5);
                            [
                                35.0 + 10.0 * r + n,
                                95.0 + 18.0 * r + n,
                                165.0 + 20.0 * r + n,
                            ]
                        }
                        Stuff::Sand => {
                            let n = noise(14.0, 6);
                            [222.0 + n, 196.0 + n, 140.0 + n]
                        }
                        Stuff::Road => {
                            let n = noise(8.0, 7);
                            [88.0 + n, 88.0 + n, 94.0 + n]
                        }
                        Stuff::Wall => {
                            let stripe = ((x as f64 / (4.0 * unit)) as usize % 2) as f64;
                            let n = noise(3.0, 8);
                            let v = 8.0 * stripe + n;
                            [210.0 + v, 200.0 + v, 175.0 + v]
                        }
                        Stuff::Floor => {
                            let plank = (y as f64 / (6.0 * unit)) as u32;
                            let seam = (y as f64 % (6.0 * unit)) < unit.min(1.0);
                            let tone =
                                (hash3(plank, 0, seed ^ 9) as f64 / u32::MAX as f64) * 30.0 - 15.0;
                            let v = tone + noise(6.0, 10) - if seam { 35.0 } else { 0.0 };
                            [150.0 + v, 100.0 + 0.7 * v, 55.0 + 0.4 * v]
                        }
                    },
                };
                let p = &mut rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
                for i in 0..3 {
                    p[i] = c[i].round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        rgb
    }
}

/// A fast integer hash for texture noise.
fn hash3(x: u32, y: u32, seed: u32) -> u32 {
    let mut h = x
        .wrapping_mul(0x8DA6_B343)
        .wrapping_add(y.wrapping_mul(0xD816_3841))
        .wrapping_add(seed.wrapping_mul(0xCB1A_B31F));
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297A_2D39);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenes() -> Vec<Scene> {
        let mut out = Vec::new();
        for (i, &(h, w)) in [(64, 64), (32, 32), (48, 96), (120, 40), (200, 300)]
            .iter()
            .enumerate()
        {
            for seed in 0..40u64 {
                let mut cfg = SceneConfig::new(h, w);
                cfg.crowd_probability = 0.1;
                out.push(Scene::generate(seed * 7 + i as u64, &cfg).unwrap());
            }
        }
        out
    }

    fn decode_rowmajor(r: &rle::Rle) -> Vec<u8> {
        rle::decode_row_major(r)
    }

    #[test]
    fn masks_partition_the_image_and_boxes_are_tight() {
        for sc in scenes() {
            let (h, w) = (sc.height, sc.width);
            let mut cover = vec![0u8; h * w];
            for (k, o) in sc.objects.iter().enumerate() {
                let m = sc.visible_mask(k);
                let area = m.iter().filter(|&&v| v == 1).count();
                assert_eq!(area, o.area);
                assert!(area > 0);
                let [x0, y0, x1, y1] = o.pixel_box;
                let mut tight = [w, h, 0, 0];
                for y in 0..h {
                    for x in 0..w {
                        if m[y * w + x] == 1 {
                            cover[y * w + x] += 1;
                            tight = [
                                tight[0].min(x),
                                tight[1].min(y),
                                tight[2].max(x + 1),
                                tight[3].max(y + 1),
                            ];
                        }
                    }
                }
                assert_eq!(tight, [x0, y0, x1, y1]);
            }
            assert!(
                cover.iter().all(|&c| c == 1),
                "every pixel belongs to one object"
            );
        }
    }

    #[test]
    fn written_segmentations_decode_to_the_visible_masks() {
        let mut occluded = 0;
        let mut crowd = 0;
        for sc in scenes() {
            let (h, w) = (sc.height, sc.width);
            for (k, o) in sc.objects.iter().enumerate() {
                let r = match sc.segmentation(k) {
                    Segmentation::Polygons(p) => {
                        let rles: Vec<rle::Rle> =
                            p.iter().map(|q| rle::from_polygon(q, h, w)).collect();
                        rle::merge(&rles, false)
                    }
                    Segmentation::Rle(counts) => rle::Rle { h, w, counts },
                };
                assert_eq!(decode_rowmajor(&r), sc.visible_mask(k), "{:?}", o.category);
                occluded += usize::from(o.occluded);
                crowd += usize::from(o.iscrowd);
            }
        }
        assert!(
            occluded > 10 && crowd > 5,
            "{occluded} occluded, {crowd} crowd"
        );
    }

    #[test]
    fn every_thing_keeps_at_least_half_of_its_shape_visible() {
        for sc in scenes() {
            let (h, w) = (sc.height, sc.width);
            for (k, o) in sc.objects.iter().enumerate() {
                let Some(p) = &o.shape_polygon else {
                    assert!(!o.category.is_thing());
                    continue;
                };
                let full = decode_rowmajor(&rle::from_polygon(p, h, w));
                let visible = sc.visible_mask(k);
                let n_full = full.iter().filter(|&&v| v == 1).count();
                assert!(visible.iter().zip(&full).all(|(&v, &f)| v <= f));
                assert!(2 * o.area >= n_full, "{} of {n_full} visible", o.area);
                assert_eq!(o.occluded, o.area < n_full);
                if !o.occluded && !o.iscrowd {
                    // COCO-style box: the polygon's extent.
                    let xs: Vec<f64> = p.iter().step_by(2).copied().collect();
                    let min_x = xs.iter().copied().fold(f64::INFINITY, f64::min);
                    assert_eq!(o.bbox[0], min_x);
                } else {
                    let [x0, y0, x1, y1] = o.pixel_box;
                    assert_eq!(
                        o.bbox,
                        [x0 as f64, y0 as f64, (x1 - x0) as f64, (y1 - y0) as f64]
                    );
                }
            }
        }
    }

    #[test]
    fn object_counts_respect_the_limits_and_things_come_first() {
        for sc in scenes() {
            let kept = sc.kept(0.02).len();
            assert!((3..=8).contains(&kept), "{kept}");
            let first_stuff = sc.objects.iter().position(|o| !o.category.is_thing());
            if let Some(f) = first_stuff {
                assert!(sc.objects[f..].iter().all(|o| !o.category.is_thing()));
            }
            let orders: Vec<usize> = sc.objects.iter().filter_map(|o| o.paint_order).collect();
            assert!(orders.windows(2).all(|p| p[0] < p[1]));
        }
    }

    #[test]
    fn generation_is_deterministic_and_seed_dependent() {
        let cfg = SceneConfig::new(64, 80);
        let a = Scene::generate(5, &cfg).unwrap();
        assert_eq!(a, Scene::generate(5, &cfg).unwrap());
        assert_eq!(a.render(), Scene::generate(5, &cfg).unwrap().render());
        assert_ne!(a, Scene::generate(6, &cfg).unwrap());
        // Pinned: a change to the generator changes every dataset; make it deliberate.
        let mut r = SplitMix64::new(1);
        assert_eq!(r.next_u64(), 0x910a_2dec_8902_5cc1);
    }

    #[test]
    fn impossible_requests_fail_with_a_clear_message() {
        let mut cfg = SceneConfig::new(64, 64);
        cfg.min_objects = 9;
        cfg.max_objects = 4;
        let err = Scene::generate(0, &cfg).unwrap_err().to_string();
        assert!(
            err.contains("min_objects_per_image 9 is greater than max_objects_per_image 4"),
            "{err}"
        );
        let err = Scene::generate(0, &SceneConfig::new(0, 5))
            .unwrap_err()
            .to_string();
        assert!(err.contains("size 0x5"), "{err}");
        let mut cfg = SceneConfig::new(64, 64);
        cfg.min_object_size = 0.9;
        let err = Scene::generate(0, &cfg).unwrap_err().to_string();
        assert!(
            err.contains("use a larger image or looser object limits"),
            "{err}"
        );
    }
}
