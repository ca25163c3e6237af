package layers.dynamodblocal;

import java.io.IOException;
import java.lang.instrument.ClassFileTransformer;
import java.lang.instrument.Instrumentation;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.security.ProtectionDomain;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

import jdk.internal.org.objectweb.asm.ClassReader;
import jdk.internal.org.objectweb.asm.ClassVisitor;
import jdk.internal.org.objectweb.asm.ClassWriter;
import jdk.internal.org.objectweb.asm.MethodVisitor;
import jdk.internal.org.objectweb.asm.Opcodes;

/**
 * A Java agent for DynamoDB Local (tests/local/dynamodb_local.py starts it with it): each table's schema and each
 * expression parsed once instead of on every request.
 *
 * DynamoDB Local keeps a table's schema as JSON in its SQLite metadata table and parses it with Jackson two or
 * three times per request (to check the table, then in each read or write job): about 70 % of the CPU of its one
 * SQLite thread in the simulation. This keeps each parse by the JSON's exact bytes, so a changed schema is new bytes,
 * parsed afresh: nothing to invalidate. Requests and jobs share a parse and only read it; the two methods that change
 * a schema (UpdateTable's and UpdateTimeToLive's, in SQLiteDBAccess) are given a parse of their own to change, as
 * without the agent (a TTL sweep holding the shared one, maybe of another table with the same schema, sees no
 * change). Should anything else change a shared parse in place, the cache forgets everything and says so on stderr.
 *
 * Condition, update and projection expressions: their syntax tree (ANTLR's, from the text alone; names and values
 * are substituted afterwards, from each request) is kept by the expression's text. Only trees that parsed are kept.
 *
 * If the agent cannot transform a class, DynamoDB Local runs that class as shipped.
 */
public final class ParseCache {
    static final String MAPPER = "software/amazon/dynamodb/services/local/shared/mapper/DynamoDbObjectMapper";
    static final String SCHEMA = "software/amazon/dynamodb/services/local/shared/access/sqlite/TableSchemaInfo";
    static final String SELF = "layers/dynamodblocal/ParseCache";
    static final String READ_VALUE = "([BLjava/lang/Class;)Ljava/lang/Object;";
    static final int MAX_SCHEMAS = 256;
    static final String EXPRESSIONS = "com/amazon/dynamodb/grammar/DynamoDbExpressionParser";
    static final String PARSE = "(Ljava/lang/String;Lorg/antlr/v4/runtime/ANTLRErrorListener;)"
            + "Lorg/antlr/v4/runtime/tree/ParseTree;";
    static final Set<String> PARSED_KINDS = Set.of("parseCondition", "parseUpdate", "parseProjection");
    static final int MAX_EXPRESSIONS = 20_000;

    /** The mapper's own parse (Jackson's ObjectMapper.readValue), which the agent adds to DynamoDbObjectMapper. */
    public interface Uncached {
        Object readUncached(byte[] json, Class<?> type) throws IOException;
    }

    private record Key(byte[] json) {
        @Override
        public boolean equals(Object other) {
            return other instanceof Key key && Arrays.equals(key.json, json);
        }

        /** The length and a sample of the bytes (equality compares them all): cheaper than hashing each. */
        @Override
        public int hashCode() {
            int hash = json.length;
            for (int i = 0; i < json.length; i += 1 + json.length / 64) {
                hash = 31 * hash + json[i];
            }
            return hash;
        }
    }

    /** A schema as parsed: the object handed out, its bytes, and the mapper that parsed them. */
    private record Parsed(Object schema, byte[] json, Uncached parser) {}

    private static final ConcurrentHashMap<Key, Parsed> PARSED = new ConcurrentHashMap<>();
    private static final Map<Object, Parsed> HANDED_OUT = Collections.synchronizedMap(new IdentityHashMap<>());
    private static final ThreadLocal<Boolean> PARSING = ThreadLocal.withInitial(() -> false);
    static final String ACCESS = "software/amazon/dynamodb/services/local/shared/access/sqlite/SQLiteDBAccess";
    static final String GET_SCHEMA = "(Ljava/lang/String;)L" + SCHEMA + ";";
    /** SQLiteDBAccess's methods that change a table's schema (UpdateTable's, UpdateTimeToLive's): their own copy. */
    static final Set<String> CHANGERS = Set.of("updateMetadataTable", "updateTable(Ljava/lang/String;Ljava/lang/String;)V");
    static final AtomicInteger COPIED_AT = new AtomicInteger(); // the call sites given a copy (the self-check's)

    /** DynamoDbObjectMapper.readValue(byte[], Class) with the agent: a schema from the cache, anything else parsed. */
    public static Object read(Object mapper, byte[] json, Class<?> type) throws IOException {
        Uncached parser = (Uncached) mapper;
        if (!type.getName().equals(SCHEMA.replace('/', '.'))) {
            return parser.readUncached(json, type);
        }
        Parsed parsed = PARSED.get(new Key(json));
        if (parsed == null) {
            parsed = new Parsed(parse(parser, json, type), json.clone(), parser);
            if (PARSED.size() >= MAX_SCHEMAS) {
                PARSED.clear(); // what was handed out stays known: a changer still gets its own copy of it
            }
            PARSED.put(new Key(parsed.json), parsed);
            HANDED_OUT.put(parsed.schema, parsed);
        }
        return parsed.schema;
    }

    private static Object parse(Uncached parser, byte[] json, Class<?> type) throws IOException {
        PARSING.set(true); // the parse sets the new object's fields through the setters that check()
        try {
            return parser.readUncached(json, type);
        } finally {
            PARSING.set(false);
        }
    }

    /**
     * What SQLiteDBAccess's schema changers get instead of the shared parse: a parse of its own, to change (a job
     * that holds the shared one, a TTL sweep of another table with the same schema, sees no change).
     */
    public static Object privateCopy(Object schema) throws IOException {
        Parsed parsed = HANDED_OUT.get(schema);
        return parsed == null ? schema : parse(parsed.parser, parsed.json, schema.getClass());
    }

    /**
     * Called first in each of TableSchemaInfo's public setters and add / remove methods: a shared parse changed in
     * place (a path that did not ask for its own copy) makes the cache forget everything and says so on stderr.
     */
    public static void check(Object schema) {
        if (!PARSING.get() && HANDED_OUT.containsKey(schema)) {
            System.err.println("layers parse cache: a shared schema was changed in place; cache cleared");
            forgetAll();
        }
    }

    private static synchronized void forgetAll() {
        PARSED.clear();
        HANDED_OUT.clear();
    }

    private static final ConcurrentHashMap<String, Object> TREES = new ConcurrentHashMap<>();
    private static final ConcurrentHashMap<String, MethodHandle> UNCACHED = new ConcurrentHashMap<>();

    /**
     * DynamoDbExpressionParser.parseCondition / parseUpdate / parseProjection with the agent: an expression's syntax
     * tree (its text only: names and values are substituted later, from the request) parsed once. Only a tree that
     * parsed is kept: a refused expression is refused again each time (its listener throws DynamoDB's error).
     */
    public static Object tree(String kind, String expression, Object listener) throws Throwable {
        String key = kind + '\u0000' + expression;
        Object tree = TREES.get(key);
        if (tree == null) {
            tree = uncached(kind, listener.getClass().getClassLoader()).invoke(expression, listener);
            if (TREES.size() >= MAX_EXPRESSIONS) {
                TREES.clear();
            }
            TREES.put(key, tree);
        }
        return tree;
    }

    private static MethodHandle uncached(String kind, ClassLoader loader) throws ReflectiveOperationException {
        MethodHandle handle = UNCACHED.get(kind);
        if (handle == null) {
            Class<?> tree = Class.forName("org.antlr.v4.runtime.tree.ParseTree", false, loader);
            Class<?> listener = Class.forName("org.antlr.v4.runtime.ANTLRErrorListener", false, loader);
            Class<?> parser = Class.forName(EXPRESSIONS.replace('/', '.'), false, loader);
            handle = MethodHandles.publicLookup().findStatic(parser, kind + "Uncached",
                    MethodType.methodType(tree, String.class, listener));
            UNCACHED.put(kind, handle);
        }
        return handle;
    }

    /**
     * A self-check, run with the agent on DynamoDB Local's classpath (tests/integration/test_dynamodb_local_agent.py):
     * the mapper was transformed, a schema's bytes parse once, and a setter makes them parse again.
     */
    public static void main(String[] args) throws Exception {
        Object mapper = Class.forName(MAPPER.replace('/', '.')).getConstructor().newInstance();
        Class<?> schema = Class.forName(SCHEMA.replace('/', '.'));
        if (!(mapper instanceof Uncached)) {
            throw new AssertionError("DynamoDbObjectMapper was not transformed");
        }
        byte[] json = "{}".getBytes("UTF-8");
        Object first = read(mapper, json, schema);
        if (read(mapper, json.clone(), schema) != first) {
            throw new AssertionError("the same schema was parsed twice");
        }
        Object own = privateCopy(first);
        Object before = ttl(first);
        schema.getMethod("setTimeToLiveAttributeName", String.class).invoke(own, "other");
        if (own == first || read(mapper, json, schema) != first || !"other".equals(ttl(own))
                || java.util.Objects.equals(ttl(first), ttl(own)) || !java.util.Objects.equals(before, ttl(first))) {
            throw new AssertionError("a schema changer's copy is the shared parse");
        }
        Class.forName(ACCESS.replace('/', '.'));
        if (COPIED_AT.get() != 2) {
            throw new AssertionError("SQLiteDBAccess's schema changers: " + COPIED_AT.get() + " calls given a copy, not 2");
        }
        schema.getMethod("setTimeToLiveAttributeName", String.class).invoke(first, "other");
        if (read(mapper, json, schema) == first) {
            throw new AssertionError("a schema changed in place was handed out again");
        }
        Class<?> expressions = Class.forName(EXPRESSIONS.replace('/', '.'));
        Class<?> listenerType = Class.forName("org.antlr.v4.runtime.ANTLRErrorListener");
        Object listener = Class.forName("org.antlr.v4.runtime.ConsoleErrorListener").getField("INSTANCE").get(null);
        java.lang.reflect.Method parse = expressions.getMethod("parseCondition", String.class, listenerType);
        Object tree = parse.invoke(null, "#a = :a AND attribute_exists(#b)", listener);
        if (parse.invoke(null, "#a = :a AND attribute_exists(#b)", listener) != tree) {
            throw new AssertionError("the same expression was parsed twice");
        }
        if (parse.invoke(null, "#a = :b AND attribute_exists(#b)", listener) == tree) {
            throw new AssertionError("another expression was handed the first one's tree");
        }
        System.out.println("parse cache: ok");
    }

    private static Object ttl(Object schema) throws ReflectiveOperationException {
        return schema.getClass().getMethod("getTimeToLiveAttributeName").invoke(schema);
    }

    public static void premain(String args, Instrumentation instrumentation) {
        instrumentation.addTransformer(new ClassFileTransformer() {
            @Override
            public byte[] transform(ClassLoader loader, String name, Class<?> c, ProtectionDomain d, byte[] bytes) {
                if (MAPPER.equals(name)) {
                    return withCachedReads(bytes);
                }
                if (EXPRESSIONS.equals(name)) {
                    return withCachedTrees(bytes);
                }
                if (ACCESS.equals(name)) {
                    return withPrivateCopies(bytes);
                }
                return SCHEMA.equals(name) ? withForgettingSetters(bytes) : null;
            }
        });
    }

    /** DynamoDbObjectMapper implementing Uncached, its readValue(byte[], Class) going through read(). */
    static byte[] withCachedReads(byte[] bytes) {
        return rewritten(bytes, writer -> new ClassVisitor(Opcodes.ASM8, writer) {
            @Override
            public void visit(int version, int access, String name, String sig, String parent, String[] interfaces) {
                String[] more = Arrays.copyOf(interfaces, interfaces.length + 1);
                more[interfaces.length] = SELF + "$Uncached";
                super.visit(version, access, name, sig, parent, more);
            }

            @Override
            public void visitEnd() {
                delegate("readValue", Opcodes.INVOKESTATIC, SELF, "read",
                        "(Ljava/lang/Object;[BLjava/lang/Class;)Ljava/lang/Object;");
                delegate("readUncached", Opcodes.INVOKESPECIAL, "com/fasterxml/jackson/databind/ObjectMapper",
                        "readValue", READ_VALUE);
                super.visitEnd();
            }

            private void delegate(String method, int call, String owner, String target, String descriptor) {
                MethodVisitor m = super.visitMethod(Opcodes.ACC_PUBLIC, method, READ_VALUE, null,
                        new String[] {"java/io/IOException"});
                m.visitCode();
                m.visitVarInsn(Opcodes.ALOAD, 0);
                m.visitVarInsn(Opcodes.ALOAD, 1);
                m.visitVarInsn(Opcodes.ALOAD, 2);
                m.visitMethodInsn(call, owner, target, descriptor, false);
                m.visitInsn(Opcodes.ARETURN);
                m.visitMaxs(0, 0);
                m.visitEnd();
            }
        });
    }

    /** DynamoDbExpressionParser's parseCondition / parseUpdate / parseProjection going through tree(). */
    static byte[] withCachedTrees(byte[] bytes) {
        return rewritten(bytes, writer -> new ClassVisitor(Opcodes.ASM8, writer) {
            @Override
            public MethodVisitor visitMethod(int access, String name, String desc, String sig, String[] exceptions) {
                boolean parses = PARSED_KINDS.contains(name) && PARSE.equals(desc);
                return super.visitMethod(access, parses ? name + "Uncached" : name, desc, sig, exceptions);
            }

            @Override
            public void visitEnd() {
                for (String kind : PARSED_KINDS) {
                    MethodVisitor m = super.visitMethod(Opcodes.ACC_PUBLIC | Opcodes.ACC_STATIC, kind, PARSE, null, null);
                    m.visitCode();
                    m.visitLdcInsn(kind);
                    m.visitVarInsn(Opcodes.ALOAD, 0);
                    m.visitVarInsn(Opcodes.ALOAD, 1);
                    m.visitMethodInsn(Opcodes.INVOKESTATIC, SELF, "tree",
                            "(Ljava/lang/String;Ljava/lang/String;Ljava/lang/Object;)Ljava/lang/Object;", false);
                    m.visitTypeInsn(Opcodes.CHECKCAST, "org/antlr/v4/runtime/tree/ParseTree");
                    m.visitInsn(Opcodes.ARETURN);
                    m.visitMaxs(0, 0);
                    m.visitEnd();
                }
                super.visitEnd();
            }
        });
    }

    /** SQLiteDBAccess whose schema changers change a copy of their own of the schema they read (privateCopy). */
    static byte[] withPrivateCopies(byte[] bytes) {
        return methodsRewritten(bytes, (access, name, desc, m) -> {
            if (!CHANGERS.contains(name) && !CHANGERS.contains(name + desc)) {
                return m;
            }
            return new MethodVisitor(Opcodes.ASM8, m) {
                @Override
                public void visitMethodInsn(int op, String owner, String called, String d, boolean itf) {
                    super.visitMethodInsn(op, owner, called, d, itf);
                    if (ACCESS.equals(owner) && "getTableSchemaInfo".equals(called) && GET_SCHEMA.equals(d)) {
                        super.visitMethodInsn(Opcodes.INVOKESTATIC, SELF, "privateCopy",
                                "(Ljava/lang/Object;)Ljava/lang/Object;", false);
                        super.visitTypeInsn(Opcodes.CHECKCAST, SCHEMA);
                        COPIED_AT.incrementAndGet();
                    }
                }
            };
        });
    }

    /** TableSchemaInfo whose public set* / add* / remove* methods call check(this) first. */
    static byte[] withForgettingSetters(byte[] bytes) {
        return methodsRewritten(bytes, (access, name, desc, m) -> {
            boolean changes = (access & Opcodes.ACC_PUBLIC) != 0
                    && (name.startsWith("set") || name.startsWith("add") || name.startsWith("remove"));
            if (!changes) {
                return m;
            }
            return new MethodVisitor(Opcodes.ASM8, m) {
                @Override
                public void visitCode() {
                    super.visitCode();
                    super.visitVarInsn(Opcodes.ALOAD, 0);
                    super.visitMethodInsn(Opcodes.INVOKESTATIC, SELF, "check", "(Ljava/lang/Object;)V", false);
                }
            };
        });
    }

    /** What a method's writer becomes: `m` itself, to leave the method as it is, or a visitor over it. */
    interface MethodRewrite {
        MethodVisitor apply(int access, String name, String desc, MethodVisitor m);
    }

    /** The class `bytes` with each of its methods written through `rewrite`. */
    private static byte[] methodsRewritten(byte[] bytes, MethodRewrite rewrite) {
        return rewritten(bytes, writer -> new ClassVisitor(Opcodes.ASM8, writer) {
            @Override
            public MethodVisitor visitMethod(int access, String name, String desc, String sig, String[] exceptions) {
                return rewrite.apply(access, name, desc, super.visitMethod(access, name, desc, sig, exceptions));
            }
        });
    }

    /** The class `bytes` rewritten by the visitor `visitor` makes over its writer (maxima recomputed). */
    private static byte[] rewritten(byte[] bytes, Function<ClassWriter, ClassVisitor> visitor) {
        ClassReader reader = new ClassReader(bytes);
        ClassWriter writer = new ClassWriter(reader, ClassWriter.COMPUTE_MAXS);
        reader.accept(visitor.apply(writer), 0);
        return writer.toByteArray();
    }
}
