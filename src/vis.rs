//! Scene-graph pictures (`vis.draw_scene_graph`, §13.3): a GraphViz DOT description, rendered
//! with the `dot` program when it is installed.

use crate::io::atomic::{temp_path_for, write_bytes_atomic};
use crate::scene_graph::SceneGraph;
use crate::vocab::{IMAGE_OBJECT, IN_IMAGE_PREDICATE};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The DOT text the original produces (orientation "V", edge width 6, arrow size 1.5, binary
/// edge weight 1.2, dummies ignored).
pub fn scene_graph_dot(g: &SceneGraph) -> String {
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut lines = vec![
        "digraph{".to_string(),
        "graph [size=\"5,3\",ratio=\"compress\",dpi=\"300\",bgcolor=\"transparent\"]".to_string(),
        "rankdir=TD".to_string(),
        "nodesep=\"0.5\"".to_string(),
        "ranksep=\"0.5\"".to_string(),
        "node [shape=\"box\",style=\"rounded,filled\",fontsize=\"48\",color=\"none\"]".to_string(),
        "node [fillcolor=\"lightpink1\"]".to_string(),
    ];
    for (i, obj) in g.objects.iter().enumerate() {
        if obj != IMAGE_OBJECT {
            lines.push(format!("{i} [label=\"{}\"]", quote(obj)));
        }
    }
    let mut next = g.objects.len();
    lines.push("node [fillcolor=\"lightblue1\"]".to_string());
    let attrs = format!(
        "[penwidth={:.6},arrowsize={:.6},weight={:.6}]",
        6.0, 1.5, 1.2
    );
    for (s, p, o) in &g.relationships {
        if p == IN_IMAGE_PREDICATE {
            continue;
        }
        lines.push(format!("{next} [label=\"{}\"]", quote(p)));
        lines.push(format!("{s}->{next} {attrs}"));
        lines.push(format!("{next}->{o} {attrs}"));
        next += 1;
    }
    lines.push("}".to_string());
    lines.join("\n") + "\n"
}

/// Whether GraphViz `dot` can be run.
pub fn graphviz_available() -> bool {
    Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Writes `<stem>.png` rendered by `dot` when available, else `<stem>.dot`. Returns the path.
pub fn draw_scene_graph(g: &SceneGraph, stem: &Path, render: bool) -> Result<PathBuf> {
    let dot = scene_graph_dot(g);
    if !render {
        let path = stem.with_extension("dot");
        write_bytes_atomic(&path, dot.as_bytes())?;
        return Ok(path);
    }
    let path = stem.with_extension("png");
    let tmp = temp_path_for(&path);
    let dot_file = temp_path_for(&stem.with_extension("dot"));
    write_bytes_atomic(&dot_file, dot.as_bytes())?;
    // Arguments, not a shell: no quoting issues with odd file names.
    let status = Command::new("dot")
        .arg("-Tpng")
        .arg(&dot_file)
        .arg("-o")
        .arg(&tmp)
        .status();
    let _ = std::fs::remove_file(&dot_file);
    match status {
        Ok(s) if s.success() => {
            crate::io::atomic::publish(&tmp, &path)?;
            Ok(path)
        }
        Ok(s) => {
            let _ = std::fs::remove_file(&tmp);
            Err(Error::invalid(format!(
                "graphviz `dot` failed ({s}) while drawing {}",
                path.display()
            )))
        }
        Err(e) => Err(Error::io("dot", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_skips_dummies_and_numbers_predicates_after_objects() {
        let g = SceneGraph {
            objects: vec!["sky".into(), "grass".into(), IMAGE_OBJECT.into()],
            relationships: vec![(0, "above".into(), 1), (0, IN_IMAGE_PREDICATE.into(), 2)],
            boxes: None,
            masks: None,
        };
        let dot = scene_graph_dot(&g);
        assert!(dot.contains("0 [label=\"sky\"]"));
        assert!(!dot.contains("__image__"));
        assert!(dot.contains("3 [label=\"above\"]"));
        assert!(dot.contains("0->3 [penwidth=6.000000,arrowsize=1.500000,weight=1.200000]"));
        assert!(dot.contains("3->1 "));
        assert!(!dot.contains("__in_image__"));
    }
}
