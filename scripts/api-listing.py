#!/usr/bin/env python3
"""Reduce a crate's rustdoc JSON to a sorted, stable text listing of its public API.

Usage: scripts/api-listing.py CRATE.json [OTHER.json ...] > listing.txt
  e.g. scripts/api-listing.py target/doc/pool_sql.json target/doc/pool_core.json
(scripts/api-snapshot.sh runs it for each library crate; read that script first.) The
OTHER.json files, of crates this one uses, only translate their items' defining paths
(pool_core::pool::Pool) to their public ones (pool_core::Pool), so that moving an item
between private modules of pool-core does not change pool-sql's listing.

One line per public item, grouped by the item that owns it and sorted:
  - every public path (modules walked from the crate root, `pub use` re-exports followed)
    with its kind and declaration: functions with generics, parameters, return type and
    where-clauses (const/async/unsafe/extern noted), structs with their public fields and
    whether private fields exist, enums with their variants, traits with their items
    (required or provided), constants, statics, type aliases, macros;
  - inherent methods and associated items of each public type;
  - the trait impls of each public type, including the auto traits (Send, Sync, Unpin,
    UnwindSafe, ...) and their conditions, with associated types (`type Output = ...`);
  - the impls of the crate's public traits for other types (blanket impls included), with
    the trait.
Not listed: blanket impls again under each type they cover; blanket impls of other crates'
traits (From<T> for T, Any, Borrow, ...: they come from the standard library); the unstable
marker traits Freeze, UnsafeUnpin and StructuralPartialEq; items hidden with #[doc(hidden)]
(rustdoc leaves them out); attributes other than #[non_exhaustive], #[repr] and
#[deprecated] (so not #[must_use]); the value of a constant that is not a literal (`= _`);
how many private fields a type has; anything about behaviour. Paths are full paths (the
public path for this crate's items, the defining path rustdoc records for other crates');
no ids, no spans, no docs, so the listing changes only when the API does (or rustdoc's view
of a dependency or the JSON format). The listing says that the API changed, not whether the
change breaks users: that is the reviewer's call (and the CHANGELOG's).

Python 3 standard library only.
"""

import json
import sys

# rustdoc JSON format versions this script was written against (Rust 1.95 writes 57).
# Other versions usually work; the format is unstable, so a new one is named on stderr.
KNOWN_FORMATS = {57}

# Unstable or compiler-internal traits that rustdoc lists with the auto traits; they are no
# promise to users and change with the toolchain, so they are left out.
UNLISTED_TRAITS = {"core::marker::Freeze", "core::marker::UnsafeUnpin", "core::marker::StructuralPartialEq"}


def one(d):
    """The single (key, value) of a tagged union, or (string, None) for a bare tag."""
    if isinstance(d, str):
        return d, None
    (k, v), = d.items()
    return k, v


class Api:
    def __init__(self, doc):
        self.doc = doc
        self.index = doc["index"]
        self.summaries = doc["paths"]
        self.root = self.item(doc["root"])
        self.crate = self.root["name"]
        self.canonical = {}   # item id -> its public path (the shortest, then the first)
        self.aliases = []     # (alias path, item id) for other public paths of an item
        self.reexports = []   # (path, source) for re-exports of items not in this crate's index
        self.lines = []       # (owner path, order, text)
        self.public_paths = {}  # another crate's defining path -> its public path

    def defining_to_public(self):
        """This crate's items: the path rustdoc records for them elsewhere -> the public one."""
        out = {}
        for id_, path in self.canonical.items():
            s = self.summaries.get(id_)
            if s and s.get("crate_id") == 0:
                out["::".join(s["path"])] = path
        return out

    def item(self, id_):
        return self.index.get(str(id_)) if id_ is not None else None

    # ---- walking the public paths -------------------------------------------------------

    def walk(self):
        found = {}  # id -> set of paths
        seen_modules = set()

        def add(id_, path):
            found.setdefault(id_, set()).add(tuple(path))

        def walk_module(mod_id, prefix):
            if (mod_id, tuple(prefix)) in seen_modules or len(prefix) > 32:
                return
            seen_modules.add((mod_id, tuple(prefix)))
            module = self.item(mod_id)
            for cid in module["inner"]["module"]["items"]:
                it = self.item(cid)
                if it is None:
                    continue
                kind, inner = one(it["inner"])
                if kind == "use":
                    target = self.item(inner["id"])
                    if inner["is_glob"]:
                        if target is not None and one(target["inner"])[0] == "module":
                            walk_module(inner["id"], prefix)
                        elif target is not None and one(target["inner"])[0] == "enum":
                            for vid in target["inner"]["enum"]["variants"]:
                                add(vid, prefix + [self.item(vid)["name"]])
                        else:
                            self.reexports.append(("::".join(prefix + ["*"]),
                                                   self.extern_path(inner["id"], inner["source"]) + "::*"))
                        continue
                    path = prefix + [inner["name"]]
                    if target is None:
                        self.reexports.append(("::".join(path), self.extern_path(inner["id"], inner["source"])))
                    elif one(target["inner"])[0] == "module":
                        add(inner["id"], path)
                        walk_module(inner["id"], path)
                    else:
                        add(inner["id"], path)
                    continue
                if it.get("visibility") not in ("public", "default"):
                    continue
                path = prefix + [it["name"]]
                add(cid, path)
                if kind == "module":
                    walk_module(cid, path)

        walk_module(self.doc["root"], [self.crate])
        for id_, paths in found.items():
            ordered = sorted(paths, key=lambda p: (len(p), p))
            self.canonical[str(id_)] = "::".join(ordered[0])
            for p in ordered[1:]:
                self.aliases.append(("::".join(p), id_))
        # Variants and fields are named through their owners (Enum::Variant).
        for id_, path in list(self.canonical.items()):
            it = self.item(id_)
            kind, inner = one(it["inner"])
            if kind == "enum":
                for vid in inner["variants"]:
                    self.canonical.setdefault(str(vid), path + "::" + self.item(vid)["name"])

    def extern_path(self, id_, written):
        s = self.summaries.get(str(id_)) if id_ is not None else None
        if not s:
            return written
        p = "::".join(s["path"])
        return self.public_paths.get(p, p)

    def path_of(self, p):
        id_ = p.get("id")
        if id_ is not None and str(id_) in self.canonical:
            return self.canonical[str(id_)]
        s = self.summaries.get(str(id_)) if id_ is not None else None
        if s:
            path = "::".join(s["path"])
            return self.public_paths.get(path, path)
        return p["path"]

    # ---- types, bounds, generics --------------------------------------------------------

    def ty(self, t):
        if t is None:
            return "()"
        k, v = one(t)
        if k == "resolved_path":
            return self.path_of(v) + self.args(v.get("args"))
        if k == "dyn_trait":
            parts = [self.poly_trait(x) for x in v["traits"]]
            if v.get("lifetime"):
                parts.append(v["lifetime"])
            return "dyn " + " + ".join(parts)
        if k in ("generic", "primitive"):
            return v
        if k == "function_pointer":
            hrtb = self.hrtb(v.get("generic_params") or [])
            sig = v["sig"]
            ins = ", ".join(self.ty(x[1]) for x in sig["inputs"])
            if sig.get("is_c_variadic"):
                ins += ", ..."
            out = "" if sig.get("output") is None else " -> " + self.ty(sig["output"])
            return hrtb + self.header(v["header"]) + "fn(" + ins + ")" + out
        if k == "tuple":
            inner = [self.ty(x) for x in v]
            return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"
        if k == "slice":
            return "[" + self.ty(v) + "]"
        if k == "array":
            return "[" + self.ty(v["type"]) + "; " + str(v["len"]) + "]"
        if k == "pat":
            return self.ty(v["type"]) + " is " + str(v.get("__pat_unstable_do_not_use", "_"))
        if k == "impl_trait":
            return "impl " + self.bounds(v)
        if k == "infer":
            return "_"
        if k == "raw_pointer":
            return ("*mut " if v["is_mutable"] else "*const ") + self.ty(v["type"])
        if k == "borrowed_ref":
            lt = (v["lifetime"] + " ") if v.get("lifetime") else ""
            return "&" + lt + ("mut " if v["is_mutable"] else "") + self.ty(v["type"])
        if k == "qualified_path":
            name = v["name"] + self.args(v.get("args"))
            if v.get("trait") is None:
                return self.ty(v["self_type"]) + "::" + name
            return "<" + self.ty(v["self_type"]) + " as " + self.path_of(v["trait"]) + \
                self.args(v["trait"].get("args")) + ">::" + name
        return json.dumps(t, sort_keys=True)

    def args(self, a):
        if not a:
            return ""
        k, v = one(a)
        if k == "angle_bracketed":
            parts = [self.garg(x) for x in v.get("args", [])]
            parts += [self.constraint(c) for c in v.get("constraints", [])]
            return "<" + ", ".join(parts) + ">" if parts else ""
        if k == "parenthesized":
            out = "" if v.get("output") is None else " -> " + self.ty(v["output"])
            return "(" + ", ".join(self.ty(x) for x in v["inputs"]) + ")" + out
        if k == "return_type_notation":
            return "(..)"
        return json.dumps(a, sort_keys=True)

    def garg(self, g):
        k, v = one(g)
        if k == "type":
            return self.ty(v)
        if k == "lifetime":
            return v
        if k == "const":
            return self.const_expr(v)
        if k == "infer":
            return "_"
        return json.dumps(g, sort_keys=True)

    @staticmethod
    def const_expr(c):
        if isinstance(c, dict):
            return c.get("value") or c.get("expr") or "_"
        return str(c)

    def constraint(self, c):
        head = c["name"] + self.args(c.get("args"))
        k, v = one(c["binding"])
        if k == "equality":
            tk, tv = one(v)
            return head + " = " + (self.ty(tv) if tk == "type" else self.const_expr(tv))
        return head + ": " + self.bounds(v)

    def poly_trait(self, p):
        return self.hrtb(p.get("generic_params") or []) + self.path_of(p["trait"]) + \
            self.args(p["trait"].get("args"))

    def hrtb(self, params):
        ps = self.gparams_list(params)
        return "for<" + ", ".join(ps) + "> " if ps else ""

    def bound(self, b):
        k, v = one(b)
        if k == "trait_bound":
            mod = {"maybe": "?", "maybe_const": "~const "}.get(v.get("modifier"), "")
            return mod + self.hrtb(v.get("generic_params") or []) + self.path_of(v["trait"]) + \
                self.args(v["trait"].get("args"))
        if k == "outlives":
            return v
        if k == "use":
            return "use<" + ", ".join(x if isinstance(x, str) else one(x)[1] for x in v) + ">"
        return json.dumps(b, sort_keys=True)

    def bounds(self, bs):
        return " + ".join(self.bound(b) for b in bs)

    def gparams_list(self, params):
        out = []
        for p in params:
            k, v = one(p["kind"])
            if k == "lifetime":
                s = p["name"]
                if v.get("outlives"):
                    s += ": " + " + ".join(v["outlives"])
            elif k == "type":
                if v.get("is_synthetic"):
                    continue
                s = p["name"]
                if v.get("bounds"):
                    s += ": " + self.bounds(v["bounds"])
                if v.get("default") is not None:
                    s += " = " + self.ty(v["default"])
            elif k == "const":
                s = "const " + p["name"] + ": " + self.ty(v["type"])
                if v.get("default") is not None:
                    s += " = " + str(v["default"])
            else:
                s = json.dumps(p, sort_keys=True)
            out.append(s)
        return out

    def gparams(self, g):
        ps = self.gparams_list(g.get("params", []) if g else [])
        return "<" + ", ".join(ps) + ">" if ps else ""

    def where(self, g):
        preds = []
        for w in (g or {}).get("where_predicates", []):
            k, v = one(w)
            if k == "bound_predicate":
                preds.append(self.hrtb(v.get("generic_params") or []) + self.ty(v["type"]) + ": " +
                             self.bounds(v["bounds"]))
            elif k == "lifetime_predicate":
                preds.append(v["lifetime"] + ": " + " + ".join(v["outlives"]))
            elif k == "eq_predicate":
                rk, rv = one(v["rhs"])
                preds.append(self.ty(v["lhs"]) + " = " + (self.ty(rv) if rk == "type" else self.const_expr(rv)))
            else:
                preds.append(json.dumps(w, sort_keys=True))
        return " where " + ", ".join(preds) if preds else ""

    @staticmethod
    def header(h):
        s = ""
        if h.get("is_const"):
            s += "const "
        if h.get("is_async"):
            s += "async "
        if h.get("is_unsafe"):
            s += "unsafe "
        abi = h.get("abi", "Rust")
        if abi != "Rust":
            k, _ = one(abi)
            s += 'extern "' + k + '" '
        return s

    @staticmethod
    def attrs(it):
        out = []
        for a in it.get("attrs", []):
            k, v = one(a)
            if k == "non_exhaustive":
                out.append("#[non_exhaustive]")
            elif k == "repr":
                parts = []
                if isinstance(v, dict):
                    if v.get("kind") not in (None, "rust"):
                        parts.append({"c": "C"}.get(v["kind"], str(v["kind"])))
                    if v.get("int"):
                        parts.append(str(v["int"]))
                    if v.get("align") is not None:
                        parts.append("align(%s)" % v["align"])
                    if v.get("packed") is not None:
                        parts.append("packed(%s)" % v["packed"])
                else:
                    parts.append(json.dumps(v, sort_keys=True))
                out.append("#[repr(" + (", ".join(parts) or "Rust") + ")]")
        if it.get("deprecation") is not None:
            out.append("#[deprecated]")
        return "".join(a + " " for a in out)

    def fn_sig(self, name, f):
        sig = f["sig"]
        params = []
        for pname, pty in sig["inputs"]:
            if pname == "self":
                k, v = one(pty)
                if k == "generic" and v == "Self":
                    params.append("self")
                    continue
                if k == "borrowed_ref" and one(v["type"]) == ("generic", "Self"):
                    lt = (v["lifetime"] + " ") if v.get("lifetime") else ""
                    params.append("&" + lt + ("mut " if v["is_mutable"] else "") + "self")
                    continue
            params.append(pname + ": " + self.ty(pty))
        if sig.get("is_c_variadic"):
            params.append("...")
        out = "" if sig.get("output") is None else " -> " + self.ty(sig["output"])
        return self.header(f["header"]) + "fn " + name + self.gparams(f["generics"]) + \
            "(" + ", ".join(params) + ")" + out + self.where(f["generics"])

    # ---- items --------------------------------------------------------------------------

    def emit(self, owner, order, text):
        self.lines.append((owner, order, text))

    def fields(self, owner, ids, stripped):
        for n, fid in enumerate(ids):
            if fid is None:
                continue
            f = self.item(fid)
            name = f["name"]
            self.emit(owner, 1, "pub field " + owner + "::" + name + ": " + self.ty(f["inner"]["struct_field"]))
        return " /* private fields */" if stripped or any(f is None for f in ids) else ""

    def render(self):
        rendered_impls = set()
        for id_, path in sorted(self.canonical.items(), key=lambda x: x[1]):
            it = self.item(id_)
            kind, inner = one(it["inner"])
            name = path.rsplit("::", 1)[-1]
            at = self.attrs(it)
            if kind == "module":
                self.emit(path, 0, at + "pub mod " + path)
            elif kind == "function":
                self.emit(path, 0, at + "pub " + self.fn_sig(path, inner))
            elif kind == "struct":
                sk, sv = one(inner["kind"])
                head = at + "pub struct " + path + self.gparams(inner["generics"])
                if sk == "unit":
                    decl = head + self.where(inner["generics"]) + ";"
                elif sk == "tuple":
                    cols = []
                    for n, fid in enumerate(sv):
                        if fid is None:
                            cols.append("_")
                        else:
                            f = self.item(fid)
                            cols.append("pub " + self.ty(f["inner"]["struct_field"]))
                            self.emit(path, 1, "pub field " + path + "::" + str(n) + ": " +
                                      self.ty(f["inner"]["struct_field"]))
                    if sv and all(c == "_" for c in cols):
                        cols = ["/* private fields */"]  # how many is not API
                    decl = head + "(" + ", ".join(cols) + ")" + self.where(inner["generics"]) + ";"
                else:
                    priv = self.fields(path, sv["fields"], sv["has_stripped_fields"])
                    if not priv and sv["fields"]:
                        priv = " /* all fields pub */"
                    decl = head + self.where(inner["generics"]) + " {" + priv + " }"
                self.emit(path, 0, decl)
                self.impls(path, inner["impls"], rendered_impls, self.natural(path, inner["generics"]))
            elif kind == "union":
                priv = self.fields(path, inner["fields"], inner["has_stripped_fields"])
                if not priv and inner["fields"]:
                    priv = " /* all fields pub */"
                self.emit(path, 0, at + "pub union " + path + self.gparams(inner["generics"]) +
                          self.where(inner["generics"]) + " {" + priv + " }")
                self.impls(path, inner["impls"], rendered_impls, self.natural(path, inner["generics"]))
            elif kind == "enum":
                stripped = " { /* private variants */ }" if inner.get("has_stripped_variants") else ""
                self.emit(path, 0, at + "pub enum " + path + self.gparams(inner["generics"]) +
                          self.where(inner["generics"]) + stripped)
                for vid in inner["variants"]:
                    self.variant(path, self.item(vid))
                self.impls(path, inner["impls"], rendered_impls, self.natural(path, inner["generics"]))
            elif kind == "variant":
                pass  # listed with its enum
            elif kind == "trait":
                flags = []
                if inner.get("is_auto"):
                    flags.append("auto")
                if inner.get("is_unsafe"):
                    flags.append("unsafe")
                sup = ": " + self.bounds(inner["bounds"]) if inner.get("bounds") else ""
                dyn = "" if inner.get("is_dyn_compatible") else "  // not dyn-compatible"
                self.emit(path, 0, at + "pub " + "".join(f + " " for f in flags) + "trait " + path +
                          self.gparams(inner["generics"]) + sup + self.where(inner["generics"]) + dyn)
                for tid in inner["items"]:
                    self.assoc(path, 2, self.item(tid), in_trait=True)
                # The trait's impls for types that are not public types of this crate (those
                # are listed with the type): foreign types, blanket impls.
                for iid in inner.get("implementations", []):
                    imp = self.item(iid)
                    if imp is None:
                        continue
                    forty = imp["inner"]["impl"]["for"]
                    k, v = one(forty)
                    if k == "resolved_path" and str(v.get("id")) in self.canonical and \
                            imp["inner"]["impl"].get("blanket_impl") is None:
                        continue
                    if iid in rendered_impls:
                        continue
                    rendered_impls.add(iid)
                    self.emit(path, 3, self.impl_line(imp))
            elif kind == "trait_alias":
                self.emit(path, 0, at + "pub trait " + path + self.gparams(inner["generics"]) + " = " +
                          self.bounds(inner["params"]) + self.where(inner["generics"]))
            elif kind == "type_alias":
                self.emit(path, 0, at + "pub type " + path + self.gparams(inner["generics"]) +
                          self.where(inner["generics"]) + " = " + self.ty(inner["type"]))
            elif kind == "constant":
                self.emit(path, 0, at + "pub const " + path + ": " + self.ty(inner["type"]) + " = " +
                          self.const_expr(inner["const"]))
            elif kind == "static":
                self.emit(path, 0, at + "pub static " + ("mut " if inner.get("is_mutable") else "") +
                          path + ": " + self.ty(inner["type"]))
            elif kind == "macro":
                self.emit(path, 0, at + "pub macro_rules! " + path)
            elif kind == "proc_macro":
                self.emit(path, 0, at + "pub proc_macro(" + str(inner.get("kind")) + ") " + path)
            elif kind == "extern_type":
                self.emit(path, 0, at + "pub extern type " + path)
            elif kind == "primitive":
                self.emit(path, 0, "primitive " + path)
                self.impls(path, inner.get("impls", []), rendered_impls)
            else:
                self.emit(path, 0, "pub " + kind + " " + path)
        for alias, id_ in self.aliases:
            self.emit(alias, 0, "pub use " + alias + " = " + self.canonical[str(id_)])
        for path, source in self.reexports:
            self.emit(path, 0, "pub use " + path + " = " + source)

    def variant(self, owner, v):
        inner = v["inner"]["variant"]
        path = owner + "::" + v["name"]
        k, kv = one(inner["kind"])
        disc = ""
        if inner.get("discriminant"):
            disc = " = " + self.const_expr(inner["discriminant"])
        at = self.attrs(v)
        if k == "plain":
            self.emit(owner, 1, at + "pub variant " + path + disc)
        elif k == "tuple":
            cols = ["_" if f is None else self.ty(self.item(f)["inner"]["struct_field"]) for f in kv]
            self.emit(owner, 1, at + "pub variant " + path + "(" + ", ".join(cols) + ")" + disc)
        else:
            cols = [self.item(f)["name"] + ": " + self.ty(self.item(f)["inner"]["struct_field"])
                    for f in kv["fields"]]
            if kv.get("has_stripped_fields"):
                cols.append("/* private fields */")
            self.emit(owner, 1, at + "pub variant " + path + " { " + ", ".join(cols) + " }" + disc)

    def assoc(self, owner, order, it, in_trait=False, context=""):
        if it is None:
            return
        kind, inner = one(it["inner"])
        path = owner + "::" + it["name"]
        at = self.attrs(it)
        vis = "" if in_trait else "pub "
        if kind == "function":
            tag = ""
            if in_trait:
                tag = "  // provided" if inner.get("has_body") else "  // required"
            self.emit(owner, order, at + vis + self.fn_sig(path, inner) + context + tag)
        elif kind == "assoc_const":
            s = at + vis + "const " + path + ": " + self.ty(inner["type"])
            if inner.get("value") is not None:
                s += " = " + str(inner["value"])
            self.emit(owner, order, s + context)
        elif kind == "assoc_type":
            s = at + vis + "type " + path + self.gparams(inner["generics"])
            if inner.get("bounds"):
                s += ": " + self.bounds(inner["bounds"])
            s += self.where(inner["generics"])
            if inner.get("type") is not None:
                s += " = " + self.ty(inner["type"])
            self.emit(owner, order, s + context)
        else:
            self.emit(owner, order, vis + kind + " " + path + context)

    def impl_line(self, imp):
        inner = imp["inner"]["impl"]
        g = inner["generics"]
        s = ("unsafe " if inner.get("is_unsafe") else "") + "impl" + self.gparams(g) + " "
        if inner.get("trait") is not None:
            s += ("!" if inner.get("is_negative") else "") + self.path_of(inner["trait"]) + \
                self.args(inner["trait"].get("args")) + " for "
        s += self.ty(inner["for"]) + self.where(g)
        assoc = []
        for aid in inner["items"]:
            a = self.item(aid)
            if a is None:
                continue
            k, av = one(a["inner"])
            if k == "assoc_type" and av.get("type") is not None:
                assoc.append("type " + a["name"] + self.gparams(av["generics"]) + " = " + self.ty(av["type"]))
            elif k == "assoc_const":
                assoc.append("const " + a["name"] + ": " + self.ty(av["type"]) +
                             ("" if av.get("value") is None else " = " + str(av["value"])))
        if assoc:
            s += " { " + "; ".join(sorted(assoc)) + " }"
        return s

    def natural(self, path, g):
        """The header of the plain inherent impl of a type: `impl<T: Bound> Type<T>`."""
        names = []
        for p in g.get("params", []):
            k, v = one(p["kind"])
            if k == "type" and v.get("is_synthetic"):
                continue
            names.append(p["name"])
        return "impl" + self.gparams(g) + " " + path + ("<" + ", ".join(names) + ">" if names else "") + \
            self.where(g)

    def impls(self, owner, ids, rendered, natural=None):
        for iid in ids:
            imp = self.item(iid)
            if imp is None or iid in rendered:
                continue
            inner = imp["inner"]["impl"]
            if inner.get("blanket_impl") is not None:
                continue  # another crate's (From<T> for T, ...), or this crate's, listed with its trait
            if inner.get("trait") is not None and self.path_of(inner["trait"]) in UNLISTED_TRAITS:
                continue
            rendered.add(iid)
            if inner.get("trait") is None:
                # Inherent: each public item, with the impl's header when it is not the plain
                # `impl<T: Bound> Type<T>` (other bounds, a where-clause, a concrete type).
                g = inner["generics"]
                header = "impl" + self.gparams(g) + " " + self.ty(inner["for"]) + self.where(g)
                ctx = "" if header == natural else "  // in " + header
                for aid in inner["items"]:
                    a = self.item(aid)
                    if a is not None and a.get("visibility") == "public":
                        self.assoc(owner, 2, a, context=ctx)
            else:
                self.emit(owner, 3, self.impl_line(imp))


def load(path):
    with open(path) as f:
        doc = json.load(f)
    if doc.get("format_version") not in KNOWN_FORMATS:
        print("api-listing: %s: rustdoc JSON format %s (written for %s): check the listing's diff"
              % (path, doc.get("format_version"), sorted(KNOWN_FORMATS)), file=sys.stderr)
    return doc


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    api = Api(load(sys.argv[1]))
    for other in sys.argv[2:]:
        dep = Api(load(other))
        dep.walk()
        api.public_paths.update(dep.defining_to_public())
    api.walk()
    api.render()
    print("# The public API of %s (all features), from rustdoc JSON by scripts/api-listing.py." % api.crate)
    print("# Regenerate with scripts/api-snapshot.sh --bless; a change here needs a CHANGELOG entry.")
    last = None
    for owner, order, text in sorted(set(api.lines)):
        if last is not None and owner != last:
            print()
        last = owner
        print(text)


if __name__ == "__main__":
    main()
