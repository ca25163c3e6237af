package layers.dynamodblocal;

import java.io.IOException;
import java.lang.instrument.ClassFileTransformer;
import java.lang.instrument.Instrumentation;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.security.ProtectionDomain;
import java.util.Arrays;
import java.util.concurrent.ConcurrentHashMap;

import jdk.internal.org.objectweb.asm.ClassReader;
import jdk.internal.org.objectweb.asm.ClassVisitor;
import jdk.internal.org.objectweb.asm.ClassWriter;
import jdk.internal.org.objectweb.asm.MethodVisitor;
import jdk.internal.org.objectweb.asm.Opcodes;

/**
 * A Java agent for DynamoDB Local (tests/local/dynamodb_local.py starts it with it): each table's schema parsed
 * once instead of on every request.
 *
 * DynamoDB Local keeps a table's schema as JSON in its SQLite metadata table and parses it with Jackson two or
 * three times per request (to check the table, then in each read or write job): about 70 % of the CPU of its one
 * SQLite thread in the simulation. This caches the parse by the JSON's exact bytes, so a changed schema is new bytes
 * and parsed afresh: nothing to invalidate. The requests only read a parsed schema; DynamoDB Local changes one only
 * in its control plane (UpdateTable, UpdateTimeToLive), through its setters, which this makes forget the cache, so
 * no object changed in place is ever handed out again. If the agent cannot transform the classes, DynamoDB Local
 * runs as shipped.
 */
public final class SchemaCache {
    static final String MAPPER = "software/amazon/dynamodb/services/local/shared/mapper/DynamoDbObjectMapper";
    static final String SCHEMA = "software/amazon/dynamodb/services/local/shared/access/sqlite/TableSchemaInfo";
    static final String SELF = "layers/dynamodblocal/SchemaCache";
    static final String READ_VALUE = "([BLjava/lang/Class;)Ljava/lang/Object;";
    static final int MAX_SCHEMAS = 256;
    static final String EXPRESSIONS = "com/amazon/dynamodb/grammar/DynamoDbExpressionParser";
    static final String PARSE = "(Ljava/lang/String;Lorg/antlr/v4/runtime/ANTLRErrorListener;)"
            + "Lorg/antlr/v4/runtime/tree/ParseTree;";
    static final java.util.Set<String> PARSED_KINDS = java.util.Set.of("parseCondition", "parseUpdate", "parseProjection");
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

    private static final ConcurrentHashMap<Key, Object> PARSED = new ConcurrentHashMap<>();
    private static final ThreadLocal<Boolean> PARSING = ThreadLocal.withInitial(() -> false);

    /** DynamoDbObjectMapper.readValue(byte[], Class) with the agent: a schema from the cache, anything else parsed. */
    public static Object read(Object mapper, byte[] json, Class<?> type) throws IOException {
        Uncached parser = (Uncached) mapper;
        if (!type.getName().equals(SCHEMA.replace('/', '.'))) {
            return parser.readUncached(json, type);
        }
        Object parsed = PARSED.get(new Key(json));
        if (parsed == null) {
            PARSING.set(true); // the parse sets the new object's fields through the setters that forget
            try {
                parsed = parser.readUncached(json, type);
            } finally {
                PARSING.set(false);
            }
            if (PARSED.size() >= MAX_SCHEMAS) {
                PARSED.clear();
            }
            PARSED.put(new Key(json.clone()), parsed);
        }
        return parsed;
    }

    /** Called first in each of TableSchemaInfo's public setters and add / remove methods. */
    public static void forget() {
        if (!PARSING.get()) {
            PARSED.clear();
        }
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
        byte[] json = "{\"timeToLiveAttributeName\":\"expires_at\"}".getBytes("UTF-8");
        Object first = read(mapper, json, schema);
        if (read(mapper, json.clone(), schema) != first) {
            throw new AssertionError("the same schema was parsed twice");
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
        System.out.println("schema cache: ok");
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
                return SCHEMA.equals(name) ? withForgettingSetters(bytes) : null;
            }
        });
    }

    /** DynamoDbObjectMapper implementing Uncached, its readValue(byte[], Class) going through read(). */
    static byte[] withCachedReads(byte[] bytes) {
        ClassReader reader = new ClassReader(bytes);
        ClassWriter writer = new ClassWriter(reader, ClassWriter.COMPUTE_MAXS);
        reader.accept(new ClassVisitor(Opcodes.ASM8, writer) {
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
        }, 0);
        return writer.toByteArray();
    }

    /** DynamoDbExpressionParser's parseCondition / parseUpdate / parseProjection going through tree(). */
    static byte[] withCachedTrees(byte[] bytes) {
        ClassReader reader = new ClassReader(bytes);
        ClassWriter writer = new ClassWriter(reader, ClassWriter.COMPUTE_MAXS);
        reader.accept(new ClassVisitor(Opcodes.ASM8, writer) {
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
        }, 0);
        return writer.toByteArray();
    }

    /** TableSchemaInfo whose public set* / add* / remove* methods call forget() first. */
    static byte[] withForgettingSetters(byte[] bytes) {
        ClassReader reader = new ClassReader(bytes);
        ClassWriter writer = new ClassWriter(reader, ClassWriter.COMPUTE_MAXS);
        reader.accept(new ClassVisitor(Opcodes.ASM8, writer) {
            @Override
            public MethodVisitor visitMethod(int access, String name, String desc, String sig, String[] exceptions) {
                MethodVisitor m = super.visitMethod(access, name, desc, sig, exceptions);
                boolean changes = (access & Opcodes.ACC_PUBLIC) != 0
                        && (name.startsWith("set") || name.startsWith("add") || name.startsWith("remove"));
                if (!changes) {
                    return m;
                }
                return new MethodVisitor(Opcodes.ASM8, m) {
                    @Override
                    public void visitCode() {
                        super.visitCode();
                        super.visitMethodInsn(Opcodes.INVOKESTATIC, SELF, "forget", "()V", false);
                    }
                };
            }
        }, 0);
        return writer.toByteArray();
    }
}
