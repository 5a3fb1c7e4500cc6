use super::*;

fn context_with_links() -> (tempfile::TempDir, Context) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    fs::create_dir_all(root.join("real/sub")).unwrap();
    fs::write(root.join("real/sub/file"), "x").unwrap();
    std::os::unix::fs::symlink("real", root.join("inside")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("abs_out")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("real/up")).unwrap();
    std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
    let canonical = fs::canonicalize(&root).unwrap();
    std::os::unix::fs::symlink(canonical.join("real"), root.join("abs_in")).unwrap();
    let context = Context::open(&root).unwrap();
    (dir, context)
}

#[test]
fn symlinked_directories_resolve_inside_the_root_or_are_refused() {
    let (_dir, context) = context_with_links();
    let found = context.resolve("inside/sub/file").unwrap();
    assert_eq!(found[0].abs, context.root().join("real/sub/file"));
    let found = context.resolve("abs_in/sub/file").unwrap();
    assert_eq!(found[0].abs, context.root().join("real/sub/file"));
    let found = context.resolve("inside/sub/*").unwrap();
    assert_eq!(found[0].abs, context.root().join("real/sub/file"));
    for escaping in ["abs_out/passwd", "abs_out/*", "real/up/etc/passwd"] {
        let error = context.resolve(escaping).unwrap_err();
        assert!(
            matches!(error, SourceError::ParentSymlinkEscapes { .. }),
            "{escaping}: {error}"
        );
    }
    assert!(matches!(
        context.resolve("loop/x").unwrap_err(),
        SourceError::SymlinkLoop(_)
    ));
}

#[test]
fn a_tree_resolves_links_inside_its_root_and_has_no_dockerignore() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("d/target/sub")).unwrap();
    fs::write(root.join("d/target/file"), "tf").unwrap();
    fs::write(root.join(".dockerignore"), "secret\n").unwrap();
    fs::write(root.join("secret"), "s").unwrap();
    std::os::unix::fs::symlink("/d/target", root.join("d/abs")).unwrap();
    std::os::unix::fs::symlink("/d/target/file", root.join("d/filelink")).unwrap();
    std::os::unix::fs::symlink("../../../../d/target", root.join("d/up")).unwrap();
    let tree = Context::tree(root).unwrap();
    let canonical = root;
    let found = |source: &str| tree.resolve(source).unwrap()[0].abs.clone();
    assert_eq!(found("/secret"), canonical.join("secret"));
    assert_eq!(found("/d/abs/sub"), canonical.join("d/target/sub"));
    assert_eq!(found("/d/up/file"), canonical.join("d/target/file"));
    assert_eq!(found("../../d/filelink"), canonical.join("d/target/file"));
    assert_eq!(found("/d/ab*/file"), canonical.join("d/target/file"));
    assert!(matches!(
        tree.resolve("/d/nothing").unwrap_err(),
        SourceError::NotInTree(_)
    ));
    // The same files as a build context: the links lead out of it.
    let context = Context::open(root).unwrap();
    assert!(context.resolve("secret").is_err(), "ignored");
    assert!(context.resolve("d/abs/sub").is_err(), "a host path");
}

#[test]
fn clean_relative_keeps_paths_inside() {
    assert_eq!(clean_relative("/a/./b/").as_deref(), Some("a/b"));
    assert_eq!(clean_relative("a/../b").as_deref(), Some("b"));
    assert_eq!(clean_relative(".").as_deref(), Some(""));
    assert_eq!(clean_relative("../x"), None);
    assert_eq!(clean_relative("a/../../x"), None);
}

#[test]
fn a_context_sharing_walks_reads_each_directory_once() {
    let (_dir, context) = context_with_links();
    let shared = Context::open(context.root()).unwrap().sharing_walks();
    let names = |context: &Context| -> Vec<String> {
        let top = context.resolve("real").unwrap();
        context
            .walk(&top[0])
            .unwrap()
            .into_iter()
            .map(|w| w.rel)
            .collect()
    };
    assert_eq!(names(&shared), ["sub", "sub/file", "up"]);
    fs::write(context.root().join("real/sub/later"), "y").unwrap();
    // The walk kept is the one every later build sees; a context that does not share its
    // walks reads the directory again.
    assert_eq!(names(&shared), ["sub", "sub/file", "up"]);
    assert_eq!(names(&context), ["sub", "sub/file", "sub/later", "up"]);
}
